import type { HTMLAttributes, ReactNode } from "react";

export interface Column<T> {
  /** Unique within the table. */
  key: string;
  header: ReactNode;
  cell: (row: T) => ReactNode;
  /** Class of the header and of each cell: "num", "hide-narrow", "actions", ... */
  className?: string;
}

type RowProps = HTMLAttributes<HTMLTableRowElement> & { [data: `data-${string}`]: string | undefined };

/** A table with a column definition per column, for the pages that list things and act on them. */
export function DataTable<T>({ rows, columns, rowKey, rowProps, className = "", testId }: {
  rows: readonly T[];
  columns: readonly Column<T>[];
  rowKey: (row: T) => string;
  /** Attributes of a row's <tr>: a class, data-* attributes for tests. */
  rowProps?: (row: T) => RowProps;
  className?: string;
  testId?: string;
}) {
  return (
    <div className="table-wrap">
      <table className={`table ${className}`.trim()} data-testid={testId}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.key} className={c.className} scope="col">
                {c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={rowKey(row)} {...rowProps?.(row)}>
              {columns.map((c) => (
                <td key={c.key} className={c.className}>
                  {c.cell(row)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
