import type { Job } from "../api/types";
import { formatMs, formatTime } from "../lib/format";

interface AttemptRow {
  attempt: number;
  workerId: string;
  startedAt: string | null;
  endedAt: string | null;
  outcome: string;
  error: string;
}

function seconds(from: string | null, to: string | null, now: number): number | null {
  if (!from) return null;
  const start = Date.parse(from);
  const end = to ? Date.parse(to) : now;
  return Number.isNaN(start) || Number.isNaN(end) ? null : Math.max(0, (end - start) / 1000);
}

const OUTCOME: Partial<Record<Job["status"], string>> = { PROCESSING: "running", COMPLETED: "succeeded", CANCELLED: "cancelled" };

/**
 * Every failed attempt (from `errors`) and then the current or last one when no error records
 * it: a running, succeeded or cancelled attempt leaves only `leasedAt`/`finishedAt` behind.
 */
export function attemptRows(job: Job): AttemptRow[] {
  const rows: AttemptRow[] = job.errors.map((e) => ({
    attempt: e.attempt, workerId: e.workerId, startedAt: e.startedAt, endedAt: e.at, outcome: "failed", error: e.error,
  }));
  const outcome = OUTCOME[job.status];
  const leased = job.leasedAt ? Date.parse(job.leasedAt) : NaN;
  const recorded = job.errors.some((e) => e.startedAt !== null && Date.parse(e.startedAt) === leased);
  if (outcome && job.leasedAt && !recorded) {
    rows.push({
      attempt: job.attempts, workerId: job.workerId, startedAt: job.leasedAt,
      endedAt: job.status === "PROCESSING" ? null : job.finishedAt, outcome, error: "",
    });
  }
  return rows;
}

export function AttemptTimeline({ job, now }: { job: Job; now: number }) {
  const rows = attemptRows(job);
  if (rows.length === 0) return <p className="muted" data-testid="attempt-timeline">No attempt yet</p>;
  return (
    <ol className="timeline" data-testid="attempt-timeline">
      {rows.map((r, i) => {
        const took = seconds(r.startedAt, r.endedAt, now);
        const [first, ...rest] = r.error.split("\n");
        return (
          <li key={i} className={`timeline-row timeline-${r.outcome}`} data-testid="attempt-row">
            <div className="timeline-head">
              <strong>Attempt {r.attempt}</strong>
              <span className="badge">{r.outcome}</span>
              <span className="mono" data-testid="attempt-worker">{r.workerId || "—"}</span>
              <span className="muted">started {formatTime(r.startedAt)}</span>
              <span className="muted" data-testid="attempt-duration">
                {took === null ? "" : `${r.outcome === "running" ? "running for" : "took"} ${formatMs(took * 1000)}`}
              </span>
            </div>
            {r.error && (
              <div data-testid="attempt-error">
                <span className="error-text mono">{first}</span>
                {rest.length > 0 && (
                  <details>
                    <summary>Full error</summary>
                    <pre className="json error-text">{r.error}</pre>
                  </details>
                )}
              </div>
            )}
          </li>
        );
      })}
    </ol>
  );
}
