import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { JobFilter, JobStatus } from "../api/types";
import { describeFilter } from "../lib/jobsQuery";
import { BulkAction, jobsWord } from "./BulkAction";

/**
 * What can be done to every job a list's filter matches, on every page: dead jobs are retried
 * or purged, unfinished ones cancelled; finished ones have nothing to do.
 */
export function BulkBar({ filter, status }: { filter: JobFilter; status: JobStatus | "" }) {
  const qc = useQueryClient();
  const words = describeFilter(filter);
  const of = words ? ` ${words}` : "";
  const refresh = () => {
    for (const key of ["jobs", "dlq", "job"]) void qc.invalidateQueries({ queryKey: [key] });
  };
  // Each mounts afresh (and counts afresh) when the filter changes.
  const key = JSON.stringify(filter);
  if (status === "DEAD") {
    return (
      <div className="bulk-bar" data-testid="bulk-bar">
        <span className="muted small">All matching, every page:</span>
        <BulkAction
          key={`retry ${key}`}
          label="Retry all matching…"
          question={(n) => `Retry ${n === 1 ? "the" : "all"} ${jobsWord(n, "dead")}${of}?`}
          done={(n) => `${jobsWord(n)} sent back to PENDING.`}
          run={(dry) => api.retryDeadJobs(filter, dry)}
          onDone={refresh}
          testId="retry-matching"
        />
        <BulkAction
          key={`purge ${key}`}
          label="Purge all matching…"
          question={(n) => `Delete ${n === 1 ? "the" : "all"} ${jobsWord(n, "dead")}${of}? This cannot be undone.`}
          done={(n) => `${jobsWord(n)} deleted.`}
          run={(dry) => api.purgeDeadJobs(filter, dry)}
          onDone={refresh}
          danger
          testId="purge-matching"
        />
      </div>
    );
  }
  if (status === "" || status === "PENDING" || status === "PROCESSING") {
    const which = status || "unfinished";
    return (
      <div className="bulk-bar" data-testid="bulk-bar">
        <span className="muted small">All matching, every page:</span>
        <BulkAction
          key={`cancel ${key}`}
          label="Cancel all matching…"
          question={(n) => `Cancel ${n === 1 ? "the" : "all"} ${jobsWord(n, which)}${of}?`}
          done={(n) => `${jobsWord(n)} cancelled.`}
          run={(dry) => api.cancelJobs(filter, dry)}
          onDone={refresh}
          danger
          testId="cancel-matching"
        />
      </div>
    );
  }
  return null;
}
