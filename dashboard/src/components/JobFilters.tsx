import { type FormEvent, useEffect, useState } from "react";
import type { JobOrder } from "../api/types";
import { useDebounced } from "../hooks/useDebounced";
import { type JobsQuery, orderAllowed } from "../lib/jobsQuery";
import { isoToLocalInput, localInputToIso } from "../lib/format";

export const ORDER_LABELS: Record<JobOrder, string> = {
  NEWEST: "Newest first",
  OLDEST: "Oldest first",
  RUN_AT: "Run at, soonest first",
  PRIORITY: "Priority, highest first",
};
const PAGE_SIZES = [25, 50, 100, 200];

/**
 * The Jobs list's filters: search (a job id opens it, anything else is looked up as a key), type
 * or type prefix with the known types as suggestions, created time range, order, page size.
 * Each change goes to `onChange` as the address's parameters ("" removes one).
 */
export function JobFilters({ value, types, onChange, onSearch }: {
  value: JobsQuery;
  types: string[];
  onChange: (changes: Record<string, string>) => void;
  onSearch: (text: string) => void;
}) {
  const [typeInput, setTypeInput] = useState(value.type);
  const [search, setSearch] = useState(value.q);
  const debouncedType = useDebounced(typeInput.trim(), 300);
  // The type box moves the address once typing pauses; the address is the source of truth.
  useEffect(() => {
    if (debouncedType !== value.type) onChange({ type: debouncedType });
  }, [debouncedType]);
  useEffect(() => setTypeInput(value.type), [value.type]);
  useEffect(() => setSearch(value.q), [value.q]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    onSearch(search.trim());
  };
  const filtered = value.type || value.q || value.createdAfter || value.createdBefore || value.runAfter || value.order || value.workerId;
  // RUN_AT and PRIORITY only where ListJobs takes them (one status other than COMPLETED).
  const orders = (Object.keys(ORDER_LABELS) as JobOrder[]).filter((o) => orderAllowed(value.status, o));
  return (
    <form className="filters" onSubmit={submit} role="search">
      <label className="filter-search">
        <span>Search</span>
        <input
          type="search"
          value={search}
          placeholder="job id, idempotency or concurrency key"
          onChange={(e) => setSearch(e.target.value)}
          data-testid="job-search"
          spellCheck={false}
          autoCapitalize="off"
        />
      </label>
      <button type="submit" className="btn" data-testid="search-submit">
        Search
      </button>
      <label>
        <span>Type</span>
        <input
          type="search"
          list="job-types"
          value={typeInput}
          placeholder="any type, or prefix.*"
          onChange={(e) => setTypeInput(e.target.value)}
          data-testid="filter-type"
          spellCheck={false}
          autoCapitalize="off"
        />
        <datalist id="job-types">
          {types.map((t) => (
            <option key={t} value={t} />
          ))}
        </datalist>
      </label>
      <label>
        <span>Created after</span>
        <input type="datetime-local" value={isoToLocalInput(value.createdAfter)} onChange={(e) => onChange({ createdAfter: localInputToIso(e.target.value) ?? "" })} data-testid="filter-created-after" />
      </label>
      <label>
        <span>Created before</span>
        <input type="datetime-local" value={isoToLocalInput(value.createdBefore)} onChange={(e) => onChange({ createdBefore: localInputToIso(e.target.value) ?? "" })} data-testid="filter-created-before" />
      </label>
      <label>
        <span>Sort</span>
        <select value={value.order || "NEWEST"} onChange={(e) => onChange({ order: e.target.value === "NEWEST" ? "" : e.target.value })} data-testid="filter-order">
          {orders.map((k) => (
            <option key={k} value={k}>
              {ORDER_LABELS[k]}
            </option>
          ))}
        </select>
      </label>
      <label>
        <span>Per page</span>
        <select value={value.pageSize} onChange={(e) => onChange({ pageSize: e.target.value === "50" ? "" : e.target.value })}>
          {PAGE_SIZES.map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </label>
      {filtered && (
        <button
          type="button"
          className="btn btn-ghost"
          onClick={() => onChange({ type: "", q: "", createdAfter: "", createdBefore: "", runAfter: "", order: "", workerId: "" })}
          data-testid="clear-filters"
        >
          Clear filters
        </button>
      )}
    </form>
  );
}
