import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { api } from "../api/client";
import { type JobStatus, STATUSES } from "../api/types";
import { ErrorBanner } from "../components/ErrorBanner";
import { Pager } from "../components/Pager";
import { StatusBadge } from "../components/StatusBadge";
import { useDebounced } from "../hooks/useDebounced";
import { useNow } from "../hooks/useNow";
import { usePaging } from "../hooks/usePaging";
import { formatRelative, formatTime } from "../lib/format";

const PAGE_SIZES = [25, 50, 100, 200];

export function Jobs() {
  const [params, setParams] = useSearchParams();
  const status = (params.get("status") ?? "") as JobStatus | "";
  const type = params.get("type") ?? "";
  const pageSize = Number(params.get("pageSize")) || 50;
  const [typeInput, setTypeInput] = useState(type);
  const debouncedType = useDebounced(typeInput.trim(), 300);
  const now = useNow();

  // The type box updates the URL once typing pauses; the URL is the source of truth.
  useEffect(() => {
    if (debouncedType !== type) update({ type: debouncedType });
  }, [debouncedType]);
  useEffect(() => setTypeInput(type), [type]);

  function update(changes: Record<string, string>) {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    setParams(next, { replace: true });
  }

  const paging = usePaging(`${status}|${type}|${pageSize}`);
  const q = useQuery({
    queryKey: ["jobs", { status, type, pageSize, token: paging.token }],
    queryFn: ({ signal }) => api.listJobs({ status, type, pageSize, pageToken: paging.token }, signal),
    placeholderData: keepPreviousData,
    refetchInterval: 3000,
  });

  return (
    <section>
      <div className="page-head">
        <h1>Jobs</h1>
        <Link to="/enqueue" className="btn btn-primary">
          Enqueue a job
        </Link>
      </div>

      <form className="filters" onSubmit={(e) => e.preventDefault()} role="search">
        <label>
          <span>Status</span>
          <select value={status} onChange={(e) => update({ status: e.target.value })} data-testid="filter-status">
            <option value="">Any status</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Type</span>
          <input
            type="search"
            value={typeInput}
            placeholder="any type"
            onChange={(e) => setTypeInput(e.target.value)}
            data-testid="filter-type"
            spellCheck={false}
            autoCapitalize="off"
          />
        </label>
        <label>
          <span>Per page</span>
          <select value={pageSize} onChange={(e) => update({ pageSize: e.target.value === "50" ? "" : e.target.value })}>
            {PAGE_SIZES.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        {(status || type) && (
          <button type="button" className="btn btn-ghost" onClick={() => update({ status: "", type: "" })}>
            Clear filters
          </button>
        )}
      </form>

      <ErrorBanner error={q.error} title="Cannot list jobs" onRetry={() => q.refetch()} />

      {q.data && (
        <>
          {q.data.jobs.length === 0 ? (
            <p className="muted empty" data-testid="jobs-empty">
              No jobs{status ? ` in ${status}` : ""}{type ? ` of type ${type}` : ""}{paging.page > 1 ? " on this page" : ""}.
            </p>
          ) : (
            <div className="table-wrap">
              <table className="table table-jobs" data-testid="jobs-table">
                <thead>
                  <tr>
                    <th>Job</th>
                    <th>Type</th>
                    <th>Status</th>
                    <th className="num">Priority</th>
                    <th className="num">Attempts</th>
                    <th className="hide-narrow">Run at</th>
                    <th className="hide-narrow">Updated</th>
                  </tr>
                </thead>
                <tbody>
                  {q.data.jobs.map((j) => (
                    <tr key={j.id} data-job-id={j.id}>
                      <td>
                        <Link to={`/jobs/${encodeURIComponent(j.id)}`} className="mono" title={j.id}>
                          {j.id}
                        </Link>
                      </td>
                      <td className="mono">{j.type}</td>
                      <td>
                        <StatusBadge status={j.status} />
                      </td>
                      <td className="num">{j.priority}</td>
                      <td className="num">
                        {j.attempts} / {j.maxRetries + 1}
                      </td>
                      <td className="hide-narrow" title={formatTime(j.runAt)}>
                        {formatRelative(j.runAt, now)}
                      </td>
                      <td className="hide-narrow" title={formatTime(j.updatedAt)}>
                        {formatRelative(j.updatedAt, now)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <Pager paging={paging} nextToken={q.data.nextPageToken} loading={q.isPlaceholderData} withFirst />
        </>
      )}
      {!q.data && q.isPending && <p className="muted">Loading jobs…</p>}
    </section>
  );
}
