import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useLocation, useParams } from "react-router-dom";
import { ApiError, api } from "../api/client";
import { CANCELLABLE, FINAL_STATUSES, type Job } from "../api/types";
import { AttemptTimeline } from "../components/AttemptTimeline";
import { ErrorBanner } from "../components/ErrorBanner";
import { JsonView } from "../components/JsonView";
import { StatusBadge } from "../components/StatusBadge";
import { useCanOperate } from "../hooks/useCanOperate";
import { useNow } from "../hooks/useNow";
import { formatRelative, formatTime } from "../lib/format";
import { curlCommand, forgeCommand } from "../lib/reenqueue";

function Field({ label, children, testId }: { label: string; children: React.ReactNode; testId?: string }) {
  return (
    <div className="field-row">
      <dt>{label}</dt>
      <dd data-testid={testId}>{children}</dd>
    </div>
  );
}

/** A button that puts `text` on the clipboard and says whether it could. */
function CopyButton({ label, text, testId }: { label: string; text: string; testId: string }) {
  const [state, setState] = useState<"" | "Copied" | "Copy failed">("");
  const copy = () => {
    // The clipboard exists only in a secure context (https or localhost); the text stays visible below.
    if (!navigator.clipboard) {
      setState("Copy failed");
      return;
    }
    navigator.clipboard.writeText(text).then(
      () => setState("Copied"),
      () => setState("Copy failed"),
    );
  };
  return (
    <button type="button" className="btn" onClick={copy} data-testid={testId} title={text}>
      {state || label}
    </button>
  );
}

export function JobDetail() {
  const { id = "" } = useParams();
  const qc = useQueryClient();
  const now = useNow();
  const canOperate = useCanOperate();
  const [confirming, setConfirming] = useState(false);
  const [reason, setReason] = useState("");
  const location = useLocation();
  const justEnqueued = (location.state as { created?: boolean } | null)?.created;

  const q = useQuery({
    queryKey: ["job", id],
    queryFn: ({ signal }) => api.getJob(id, signal),
    // Follow a job that is still moving; a finished one no longer changes.
    refetchInterval: (query) => {
      const job = query.state.data;
      if (query.state.error instanceof ApiError && query.state.error.status === 404) return false;
      if (!job) return 2000;
      return FINAL_STATUSES.includes(job.status) ? false : job.status === "DEAD" ? 5000 : 1000;
    },
  });

  const settle = (job: Job) => {
    qc.setQueryData(["job", id], job);
    void qc.invalidateQueries({ queryKey: ["jobs"] });
    void qc.invalidateQueries({ queryKey: ["dlq"] });
  };

  const cancel = useMutation({
    mutationFn: () => api.cancelJob(id, reason.trim()),
    onSuccess: (job) => {
      setConfirming(false);
      setReason("");
      settle(job);
    },
  });
  const retry = useMutation({ mutationFn: () => api.retryDead(id), onSuccess: settle });

  const job = q.data;

  return (
    <section>
      <div className="page-head">
        <h1>
          Job <span className="mono break">{id}</span>
        </h1>
        <Link to="/jobs" className="btn btn-ghost">
          ← All jobs
        </Link>
      </div>

      <ErrorBanner error={q.error} title={q.error instanceof ApiError && q.error.status === 404 ? "Not found" : "Cannot load the job"} onRetry={() => q.refetch()} />
      {justEnqueued === true && (
        <div className="banner banner-ok" role="status" data-testid="enqueued-notice">
          Job enqueued.
        </div>
      )}
      {justEnqueued === false && (
        <div className="banner banner-warn" role="status" data-testid="enqueued-notice">
          That idempotency key already belonged to this job: nothing new was enqueued.
        </div>
      )}
      {!job && q.isPending && <p className="muted">Loading…</p>}

      {job && (
        <>
          <div className="job-summary">
            <StatusBadge status={job.status} />
            <span className="mono">{job.type}</span>
            <div className="spacer" />
            {canOperate && job.status === "DEAD" && (
              <button type="button" className="btn btn-primary" onClick={() => retry.mutate()} disabled={retry.isPending} data-testid="retry-job">
                {retry.isPending ? "Retrying…" : "Retry"}
              </button>
            )}
            {canOperate && CANCELLABLE.includes(job.status) && !confirming && (
              <button type="button" className="btn btn-danger" onClick={() => setConfirming(true)} data-testid="cancel-job">
                Cancel job…
              </button>
            )}
          </div>

          {confirming && (
            <form
              className="confirm"
              onSubmit={(e) => {
                e.preventDefault();
                cancel.mutate();
              }}
            >
              <p>
                Cancel this job? {job.status === "PROCESSING" ? "The worker running it finds out at its next heartbeat and its result is refused." : "It will not run."}
              </p>
              <label className="field">
                <span>Reason (optional, stored as the last error)</span>
                <input value={reason} onChange={(e) => setReason(e.target.value)} maxLength={1000} data-testid="cancel-reason" />
              </label>
              <div className="confirm-actions">
                <button type="submit" className="btn btn-danger" disabled={cancel.isPending} data-testid="confirm-cancel">
                  {cancel.isPending ? "Cancelling…" : "Yes, cancel it"}
                </button>
                <button type="button" className="btn" onClick={() => setConfirming(false)}>
                  Keep it
                </button>
              </div>
            </form>
          )}
          <ErrorBanner error={cancel.error} title="Cancel failed" />
          <ErrorBanner error={retry.error} title="Retry failed" />

          <div className="grid-2">
            <div className="panel">
              <h2>Details</h2>
              <dl className="fields">
                <Field label="Status" testId="job-status">
                  {job.status}
                </Field>
                <Field label="Type">{job.type}</Field>
                <Field label="Priority" testId="job-priority">
                  {job.priority}
                </Field>
                <Field label="Attempts" testId="job-attempts">
                  {job.attempts} of {job.maxRetries + 1} (max retries {job.maxRetries})
                </Field>
                <Field label="Run at">
                  {formatTime(job.runAt)} <span className="muted">({formatRelative(job.runAt, now)})</span>
                </Field>
                <Field label="Worker" testId="job-worker">
                  {job.workerId ? <span className="mono">{job.workerId}</span> : <span className="muted">none yet</span>}
                </Field>
                <Field label="Lease expires">
                  {job.status === "PROCESSING" && job.leaseExpiresAt ? (
                    <>
                      {formatTime(job.leaseExpiresAt)} <span className="muted">({formatRelative(job.leaseExpiresAt, now)})</span>
                    </>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </Field>
                <Field label="Created">{formatTime(job.createdAt)}</Field>
                <Field label="Updated">
                  {formatTime(job.updatedAt)} <span className="muted">({formatRelative(job.updatedAt, now)})</span>
                </Field>
                {job.schedule && (
                  <Field label="Schedule" testId="job-schedule">
                    <Link to={`/schedules?name=${encodeURIComponent(job.schedule)}`} className="mono">
                      {job.schedule}
                    </Link>
                  </Field>
                )}
                {job.idempotencyKey && (
                  <Field label="Idempotency key">
                    <span className="mono">{job.idempotencyKey}</span>
                  </Field>
                )}
              </dl>
            </div>
            <div className="stack">
              <div className="panel">
                <h2>Last error</h2>
                {job.lastError ? (
                  <pre className="json error-text" data-testid="job-last-error">
                    {job.lastError}
                  </pre>
                ) : (
                  <p className="muted" data-testid="job-last-error">
                    None
                  </p>
                )}
              </div>
              <div className="panel">
                <h2>Payload</h2>
                <JsonView value={job.payload} testId="job-payload" />
              </div>
              <div className="panel">
                <h2>Result</h2>
                <JsonView value={job.result} empty={job.status === "COMPLETED" ? "(empty)" : "No result yet"} testId="job-result" />
              </div>
            </div>
          </div>

          <div className="panel">
            <h2>Attempts</h2>
            <AttemptTimeline job={job} now={now} />
          </div>

          <div className="panel">
            <h2>Enqueue a copy</h2>
            <div className="confirm-actions">
              <CopyButton label="Copy as curl" text={curlCommand(job, window.location.origin)} testId="copy-curl" />
              <CopyButton label="Copy as forge" text={forgeCommand(job)} testId="copy-forge" />
            </div>
            <details>
              <summary>Show the commands</summary>
              <pre className="json" data-testid="curl-command">{curlCommand(job, window.location.origin)}</pre>
              <pre className="json" data-testid="forge-command">{forgeCommand(job)}</pre>
            </details>
          </div>
        </>
      )}
    </section>
  );
}
