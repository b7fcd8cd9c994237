import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { ApiError, api, errorMessage } from "../api/client";
import type { Job } from "../api/types";
import { BulkBar } from "../components/BulkBar";
import { type Column, DataTable } from "../components/DataTable";
import { ErrorBanner } from "../components/ErrorBanner";
import { JobFilters } from "../components/JobFilters";
import { Pager } from "../components/Pager";
import { RelativeTime } from "../components/RelativeTime";
import { StatusBadge } from "../components/StatusBadge";
import { StatusTabs, tabCounts } from "../components/StatusTabs";
import { useLiveStats } from "../hooks/stats";
import { useCanOperate } from "../hooks/useCanOperate";
import { useNow } from "../hooks/useNow";
import { usePaging } from "../hooks/usePaging";
import { formatTime } from "../lib/format";
import { bulkFilter, listParams, orderAllowed, readJobsQuery } from "../lib/jobsQuery";

// Job ids are UUIDs: a search that looks like one is tried as an id first.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function columns(now: number): Column<Job>[] {
  return [
    {
      key: "id",
      header: "Job",
      cell: (j) => (
        <Link to={`/jobs/${encodeURIComponent(j.id)}`} className="mono" title={j.id}>
          {j.id}
        </Link>
      ),
    },
    { key: "type", header: "Type", className: "mono", cell: (j) => j.type },
    { key: "status", header: "Status", cell: (j) => <StatusBadge status={j.status} /> },
    { key: "priority", header: "Priority", className: "num", cell: (j) => j.priority },
    { key: "attempts", header: "Attempts", className: "num", cell: (j) => `${j.attempts} / ${j.maxRetries + 1}` },
    { key: "runAt", header: "Run at", className: "hide-narrow", cell: (j) => <RelativeTime iso={j.runAt} now={now} /> },
    { key: "created", header: "Created", className: "hide-narrow", cell: (j) => <RelativeTime iso={j.createdAt} now={now} /> },
  ];
}

export function Jobs() {
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const filter = readJobsQuery(params);
  const now = useNow();
  const { stats } = useLiveStats();
  const canOperate = useCanOperate();
  const [searchError, setSearchError] = useState<string | null>(null);

  function update(changes: Record<string, string>) {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    setParams(next, { replace: true });
  }

  /** A job id opens the job; anything else (or an id no job has) is searched as a key. */
  async function search(text: string) {
    setSearchError(null);
    if (UUID.test(text)) {
      try {
        const job = await api.getJob(text);
        navigate(`/jobs/${encodeURIComponent(job.id)}`);
        return;
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) return setSearchError(errorMessage(e));
      }
    }
    update({ q: text });
  }

  const request = listParams(filter);
  const paging = usePaging(JSON.stringify(request));
  const q = useQuery({
    queryKey: ["jobs", request, paging.token],
    queryFn: ({ signal }) => api.listJobs({ ...request, pageToken: paging.token }, signal),
    placeholderData: keepPreviousData,
    refetchInterval: 3000,
  });
  const bulk = bulkFilter(filter);

  return (
    <section>
      <div className="page-head">
        <h1>Jobs</h1>
        <Link to="/enqueue" className="btn btn-primary">
          Enqueue a job
        </Link>
      </div>

      <StatusTabs
        status={filter.status}
        counts={tabCounts(stats, filter.type)}
        onChange={(status) => update({ status, ...(orderAllowed(status, filter.order) ? {} : { order: "" }) })}
      />
      <JobFilters value={filter} types={stats?.types.map((t) => t.type) ?? []} onChange={update} onSearch={(text) => void search(text)} />
      {filter.workerId && (
        <p className="muted small" data-testid="worker-filter">
          Leased to worker <span className="mono">{filter.workerId}</span>
        </p>
      )}
      {filter.runAfter && (
        <p className="muted small" data-testid="run-after-filter">
          {filter.status === "PENDING" ? "Scheduled jobs: " : ""}run at later than{" "}
          <time dateTime={filter.runAfter}>{formatTime(filter.runAfter)}</time>
        </p>
      )}
      {searchError && (
        <div className="banner banner-error" role="alert">
          Cannot look the job up: {searchError}
        </div>
      )}
      {canOperate && bulk && <BulkBar filter={bulk} status={filter.status} />}
      <ErrorBanner error={q.error} title="Cannot list jobs" onRetry={() => q.refetch()} />

      {q.data && q.data.jobs.length === 0 && (
        <p className="muted empty" data-testid="jobs-empty">
          No jobs{filter.status ? ` in ${filter.status}` : ""}{filter.type ? ` of type ${filter.type}` : ""}
          {filter.q ? ` matching ${filter.q}` : ""}{paging.page > 1 ? " on this page" : ""}.
        </p>
      )}
      {q.data && q.data.jobs.length > 0 && (
        <DataTable rows={q.data.jobs} columns={columns(now)} rowKey={(j) => j.id} rowProps={(j) => ({ "data-job-id": j.id })} className="table-jobs" testId="jobs-table" />
      )}
      {q.data && <Pager paging={paging} nextToken={q.data.nextPageToken} loading={q.isPlaceholderData} withFirst />}
      {!q.data && q.isPending && <p className="muted">Loading jobs…</p>}
    </section>
  );
}
