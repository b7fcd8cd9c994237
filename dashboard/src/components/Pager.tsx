import type { usePaging } from "../hooks/usePaging";

/** Previous / page number / Next for a keyset-paged list (and First, when asked): the one
 * pager every paged view shows. `nextToken` is the current page's next_page_token; Next is off
 * on the last page and while a new page is loading (`loading`). */
export function Pager({
  paging,
  nextToken,
  loading = false,
  withFirst = false,
}: {
  paging: ReturnType<typeof usePaging>;
  nextToken: string;
  loading?: boolean;
  withFirst?: boolean;
}) {
  return (
    <nav className="pager" aria-label="Pages">
      {withFirst && (
        <button type="button" className="btn" onClick={paging.first} disabled={paging.page === 1}>
          First
        </button>
      )}
      <button type="button" className="btn" onClick={paging.prev} disabled={paging.page === 1}>
        Previous
      </button>
      <span className="muted" data-testid="page-number">
        Page {paging.page}
      </span>
      <button
        type="button"
        className="btn"
        onClick={() => paging.next(nextToken)}
        disabled={!nextToken || loading}
        data-testid="next-page"
      >
        Next
      </button>
    </nav>
  );
}
