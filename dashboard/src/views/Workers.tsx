import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { api } from "../api/client";
import type { WorkerInfo } from "../api/types";
import { EmptyState } from "../components/EmptyState";
import { ErrorBanner } from "../components/ErrorBanner";
import { RelativeTime } from "../components/RelativeTime";
import { useLiveStats } from "../hooks/stats";
import { useNow } from "../hooks/useNow";
import { shortId } from "../lib/format";

// As many of a worker's running jobs as one page lists; its in-flight count says if there are more.
const SHOWN = 100;

/** The jobs a worker is running now, as links to their pages. */
function InFlightJobs({ worker }: { worker: WorkerInfo }) {
  const q = useQuery({
    queryKey: ["jobs", { status: "PROCESSING", workerId: worker.workerId }],
    queryFn: ({ signal }) => api.listJobs({ status: "PROCESSING", workerId: worker.workerId, pageSize: SHOWN }, signal),
    refetchInterval: 2000,
  });
  if (q.error) return <ErrorBanner error={q.error} title="Cannot list its jobs" />;
  if (!q.data) return <span className="muted">…</span>;
  if (q.data.jobs.length === 0) return <span className="muted">none</span>;
  return (
    <ul className="inflight" data-testid="worker-jobs">
      {q.data.jobs.map((j) => (
        <li key={j.id}>
          <Link to={`/jobs/${encodeURIComponent(j.id)}`} className="mono" title={j.id} data-job-id={j.id}>
            {j.type} · {shortId(j.id)}
          </Link>
        </li>
      ))}
      {q.data.nextPageToken && (
        <li>
          <Link to={`/jobs?status=PROCESSING&workerId=${encodeURIComponent(worker.workerId)}`}>all of them</Link>
        </li>
      )}
    </ul>
  );
}

export function Workers() {
  const { stats, error } = useLiveStats();
  const now = useNow();
  const workers = stats?.workers ?? [];
  return (
    <section>
      <div className="page-head">
        <h1>Workers</h1>
        <span className="muted small" data-testid="workers-count">
          {stats ? `${workers.length} connected` : ""}
        </span>
      </div>
      {!stats && (error ? <ErrorBanner error={new Error(error)} title="Cannot load stats" /> : <p className="muted">Loading…</p>)}
      {stats && workers.length === 0 && (
        <EmptyState testId="workers-empty" command="workerd --broker 127.0.0.1:50051 --handlers myapp.handlers">
          No worker has a lease stream open. Start one:
        </EmptyState>
      )}
      {workers.length > 0 && (
        <div className="table-wrap">
          <table className="table table-workers" data-testid="workers-page-table">
            <thead>
              <tr>
                <th scope="col">Worker</th>
                <th scope="col">Types</th>
                <th scope="col" className="num">In flight</th>
                <th scope="col">Running now</th>
                <th scope="col" className="hide-narrow">Broker</th>
                <th scope="col" className="hide-narrow">Connected</th>
                <th scope="col">Last seen</th>
              </tr>
            </thead>
            <tbody>
              {workers.map((w) => (
                <tr key={`${w.brokerId}/${w.workerId}`} data-worker-id={w.workerId}>
                  <td className="mono">{w.workerId}</td>
                  <td className="wrap">{w.types.length ? w.types.join(", ") : <span className="muted">all</span>}</td>
                  <td className="num" data-testid="worker-inflight">
                    {w.inFlight} / {w.maxInFlight}
                  </td>
                  <td>
                    <InFlightJobs worker={w} />
                  </td>
                  <td className="hide-narrow mono small">{w.brokerId || "—"}</td>
                  <td className="hide-narrow">
                    <RelativeTime iso={w.connectedAt} now={now} />
                  </td>
                  <td>
                    <RelativeTime iso={w.lastSeen} now={now} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
