import type { JobStatus } from "../api/types";

export function StatusBadge({ status }: { status: JobStatus }) {
  const label = status === "STATUS_UNSPECIFIED" ? "UNKNOWN" : status;
  return (
    <span className={`badge badge-${label.toLowerCase()}`} data-testid="status-badge">
      {label}
    </span>
  );
}
