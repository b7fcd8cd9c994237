import { useQuery } from "@tanstack/react-query";
import type { MouseEvent, ReactNode } from "react";
import { Link, useNavigate } from "react-router-dom";
import { api } from "../api/client";
import type { ThroughputReport } from "../api/types";
import { Badge } from "../components/Badge";
import { QueueWaitChart, StackedByTypeChart } from "../components/Charts";
import { ErrorBanner } from "../components/ErrorBanner";
import { useLiveStats } from "../hooks/stats";
import { useNow } from "../hooks/useNow";
import { formatCount, formatDuration, formatMs, formatRelative } from "../lib/format";
import { scheduledJobsPath } from "../lib/jobsQuery";

const CARDS = [
  { key: "pending", label: "Pending", hint: "runnable now", to: "/jobs?status=PENDING" },
  // The pending jobs whose run_at is later than the moment the card is clicked (see `cardLink`).
  { key: "scheduled", label: "Scheduled", hint: "waiting for run_at", to: null },
  { key: "processing", label: "Processing", hint: "leased", to: "/jobs?status=PROCESSING" },
  { key: "completed", label: "Completed", hint: "kept until retention", to: "/jobs?status=COMPLETED" },
  { key: "dead", label: "Dead", hint: "dead-letter queue", to: "/dlq" },
  { key: "cancelled", label: "Cancelled", hint: "kept until retention", to: "/jobs?status=CANCELLED" },
] as const;

/** The last hour per minute from GET /v1/stats/throughput, asked again every 10 s. */
function useLastHour() {
  return useQuery({
    queryKey: ["throughput"],
    queryFn: ({ signal }) => api.throughput(3600, signal),
    refetchInterval: 10_000,
  });
}

/** A chart of the last hour once it is in, else why not. */
function HourChart({ hour, children }: { hour: ReturnType<typeof useLastHour>; children: (report: ThroughputReport) => ReactNode }) {
  if (hour.data) return <>{children(hour.data)}</>;
  if (hour.error) return <ErrorBanner error={hour.error} title="Cannot load the last hour" onRetry={() => hour.refetch()} />;
  return <p className="muted">Loading…</p>;
}

export function Overview() {
  const { stats, error, state, receivedAt } = useLiveStats();
  const now = useNow();
  const navigate = useNavigate();
  /** A card's link; the Scheduled card's (`to` null) lists the jobs scheduled when it is
   * followed, one fixed time, so that its pages keep one filter. */
  const cardLink = (to: string | null) =>
    to !== null
      ? { to }
      : {
          to: scheduledJobsPath(now),
          onClick: (e: MouseEvent) => {
            e.preventDefault();
            navigate(scheduledJobsPath(Date.now()));
          },
        };
  const hour = useLastHour();

  if (!stats) {
    return (
      <section>
        <h1>Overview</h1>
        {error ? (
          <div className="banner banner-error" role="alert">
            Cannot load stats: {error}
          </div>
        ) : (
          <p className="muted">Loading stats…</p>
        )}
      </section>
    );
  }

  const last = stats.throughput.at(-1);
  const lastHour = stats.throughput.reduce((a, p) => ({ c: a.c + p.completed, f: a.f + p.failed }), { c: 0, f: 0 });

  return (
    <section className="overview">
      <div className="page-head">
        <h1>Overview</h1>
        <span className="muted small" data-testid="stats-updated">
          {receivedAt ? `updated ${formatRelative(new Date(receivedAt).toISOString(), now)}` : ""}
        </span>
      </div>
      {state !== "live" && error && (
        <div className="banner banner-warn" role="alert">
          Live updates interrupted: {error}. Reconnecting automatically; the numbers below may be stale.
        </div>
      )}

      <div className="cards">
        {CARDS.map((c) => (
          <Link key={c.key} {...cardLink(c.to)} className={`card card-${c.key}`} data-testid={`count-${c.key}`}>
            <span className="card-label">{c.label}</span>
            <span className="card-value" data-value={stats[c.key]}>
              {formatCount(stats[c.key])}
            </span>
            <span className="card-hint">{c.hint}</span>
          </Link>
        ))}
      </div>

      <div className="panel">
        <div className="panel-head">
          <h2>Throughput by type</h2>
          <span className="muted small">
            this minute: <b data-testid="minute-completed">{last?.completed ?? 0}</b> completed,{" "}
            <b>{last?.failed ?? 0}</b> failed · last hour: {formatCount(lastHour.c)} / {formatCount(lastHour.f)}
          </span>
        </div>
        <HourChart hour={hour}>{(r) => <StackedByTypeChart report={r} field="completed" testId="chart-throughput" />}</HourChart>
      </div>

      <div className="grid-2">
        <div className="panel">
          <div className="panel-head">
            <h2>Failures</h2>
            <span className="muted small">failed attempts per minute, by type</span>
          </div>
          <HourChart hour={hour}>{(r) => <StackedByTypeChart report={r} field="failed" testId="chart-failures" />}</HourChart>
        </div>

        <div className="panel">
          <div className="panel-head">
            <h2>Queue wait</h2>
            <span className="muted small">
              {formatCount(stats.queueWait.count)} leased in the last {formatDuration(stats.queueWait.windowSeconds || 300)}
            </span>
          </div>
          <dl className="stat-list" data-testid="queue-wait">
            <div>
              <dt>p50</dt>
              <dd>{formatMs(stats.queueWait.p50Ms)}</dd>
            </div>
            <div>
              <dt>p90</dt>
              <dd>{formatMs(stats.queueWait.p90Ms)}</dd>
            </div>
            <div>
              <dt>p99</dt>
              <dd>{formatMs(stats.queueWait.p99Ms)}</dd>
            </div>
            <div>
              <dt>Oldest pending</dt>
              <dd data-testid="oldest-pending">{formatDuration(stats.oldestPendingAgeSeconds)}</dd>
            </div>
          </dl>
          <HourChart hour={hour}>{(r) => <QueueWaitChart report={r} height={180} />}</HourChart>
        </div>
      </div>

      <div className="panel">
        <div className="panel-head">
          <h2>Job types</h2>
          <span className="muted small">{stats.types.length} types</span>
        </div>
        {stats.types.length === 0 ? (
          <p className="muted">No jobs yet. <Link to="/enqueue">Enqueue one.</Link></p>
        ) : (
          <div className="table-wrap">
            <table className="table" data-testid="types-table">
              <thead>
                <tr>
                  <th>Type</th>
                  <th className="num">Pending</th>
                  <th className="num hide-narrow">Scheduled</th>
                  <th className="num">Processing</th>
                  <th className="num hide-narrow">Completed</th>
                  <th className="num">Dead</th>
                  <th className="num">Oldest pending</th>
                </tr>
              </thead>
              <tbody>
                {stats.types.map((t) => (
                  <tr key={t.type} data-type={t.type}>
                    <td>
                      <Link to={`/jobs?type=${encodeURIComponent(t.type)}`} className="mono">
                        {t.type}
                      </Link>{" "}
                      <Link to={`/queues?type=${encodeURIComponent(t.type)}`} className="queue-link" data-testid="queue-link" title={`The ${t.type} queue: pause, resume, limits`}>
                        {t.paused ? <Badge tone="warn">Paused</Badge> : "queue"}
                      </Link>
                    </td>
                    <td className="num">{formatCount(t.pending)}</td>
                    <td className="num hide-narrow">{formatCount(t.scheduled)}</td>
                    <td className="num">{formatCount(t.processing)}</td>
                    <td className="num hide-narrow">{formatCount(t.completed)}</td>
                    <td className={`num ${t.dead ? "text-bad" : ""}`}>
                      {t.dead ? <Link to={`/dlq?type=${encodeURIComponent(t.type)}`}>{formatCount(t.dead)}</Link> : 0}
                    </td>
                    <td className="num">{t.pending ? formatDuration(t.oldestPendingAgeSeconds) : "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>

      <div className="panel">
        <div className="panel-head">
          <h2>
            <Link to="/workers">Workers</Link>
          </h2>
          <span className="muted small" data-testid="worker-count">
            {stats.workers.length} connected
          </span>
        </div>
        {stats.workers.length === 0 ? (
          <p className="muted">No worker has a lease stream open.</p>
        ) : (
          <div className="table-wrap">
            <table className="table" data-testid="workers-table">
              <thead>
                <tr>
                  <th>Worker</th>
                  <th>Types</th>
                  <th className="num">In flight</th>
                  <th>Last seen</th>
                  <th className="hide-narrow">Connected</th>
                  <th className="hide-narrow">Broker</th>
                </tr>
              </thead>
              <tbody>
                {stats.workers.map((w) => (
                  <tr key={`${w.brokerId}/${w.workerId}`}>
                    <td className="mono">{w.workerId}</td>
                    <td className="wrap">{w.types.length ? w.types.join(", ") : <span className="muted">all</span>}</td>
                    <td className="num">
                      {w.inFlight} / {w.maxInFlight}
                    </td>
                    <td>{formatRelative(w.lastSeen, now)}</td>
                    <td className="hide-narrow">{formatRelative(w.connectedAt, now)}</td>
                    <td className="hide-narrow mono small">{w.brokerId || "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>
    </section>
  );
}
