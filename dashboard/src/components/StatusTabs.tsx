import type { Counts, JobStatus, QueueStats } from "../api/types";
import { STATUSES } from "../api/types";
import { formatCount } from "../lib/format";

const LABELS: Record<JobStatus | "", string> = {
  "": "All", PENDING: "Pending", PROCESSING: "Processing", COMPLETED: "Completed", DEAD: "Dead", CANCELLED: "Cancelled", STATUS_UNSPECIFIED: "Unknown",
};

/** The live counts of one type, of the types starting with a prefix ("email.*"), or of all. */
function countsOf(stats: QueueStats, type: string): Counts | null {
  const t = type.trim();
  if (!t) return stats;
  const prefix = t.endsWith("*") ? t.slice(0, -1) : null;
  const chosen = stats.types.filter((x) => (prefix === null ? x.type === t : x.type.startsWith(prefix)));
  if (prefix === null && chosen.length === 0) return null;
  const zero: Counts = { pending: 0, scheduled: 0, processing: 0, completed: 0, dead: 0, cancelled: 0, oldestPendingAgeSeconds: 0 };
  return chosen.reduce<Counts>((a, x) => ({
    pending: a.pending + x.pending, scheduled: a.scheduled + x.scheduled, processing: a.processing + x.processing,
    completed: a.completed + x.completed, dead: a.dead + x.dead, cancelled: a.cancelled + x.cancelled, oldestPendingAgeSeconds: 0,
  }), zero);
}

/** How many jobs each tab lists: PENDING holds the scheduled ones too (run_at in the future). */
export function tabCounts(stats: QueueStats | null, type: string): Record<string, number> | null {
  const c = stats ? countsOf(stats, type) : null;
  if (!c) return null;
  const byStatus: Record<string, number> = {
    PENDING: c.pending + c.scheduled, PROCESSING: c.processing, COMPLETED: c.completed, DEAD: c.dead, CANCELLED: c.cancelled,
  };
  byStatus[""] = Object.values(byStatus).reduce((a, n) => a + n, 0);
  return byStatus;
}

/** A tab per status (and All), each with its live count. */
export function StatusTabs({ status, counts, onChange }: {
  status: JobStatus | "";
  counts: Record<string, number> | null;
  onChange: (status: JobStatus | "") => void;
}) {
  return (
    <div className="tabs" role="tablist" aria-label="Status" data-testid="status-tabs">
      {(["", ...STATUSES] as const).map((s) => (
        <button
          key={s || "all"}
          type="button"
          role="tab"
          aria-selected={status === s}
          className={`tab ${status === s ? "tab-active" : ""}`}
          onClick={() => onChange(s)}
          data-testid={`tab-${s || "ALL"}`}
        >
          {LABELS[s]}
          {counts && (
            <span className="tab-count" data-testid="tab-count" data-value={counts[s]}>
              {formatCount(counts[s])}
            </span>
          )}
        </button>
      ))}
    </div>
  );
}
