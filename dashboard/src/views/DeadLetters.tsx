import { keepPreviousData, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { api, errorMessage } from "../api/client";
import { BulkBar } from "../components/BulkBar";
import { ErrorBanner } from "../components/ErrorBanner";
import { Pager } from "../components/Pager";
import { useDebounced } from "../hooks/useDebounced";
import { useNow } from "../hooks/useNow";
import { usePaging } from "../hooks/usePaging";
import { useCanOperate } from "../hooks/useCanOperate";
import { formatRelative, formatTime } from "../lib/format";

interface Outcome {
  kind: "ok" | "error";
  text: string;
}

export function DeadLetters() {
  const qc = useQueryClient();
  const now = useNow();
  const [params, setParams] = useSearchParams();
  const type = params.get("type") ?? "";
  const [typeInput, setTypeInput] = useState(type);
  const debouncedType = useDebounced(typeInput.trim(), 300);
  useEffect(() => {
    if (debouncedType === type) return;
    const next = new URLSearchParams(params);
    if (debouncedType) next.set("type", debouncedType);
    else next.delete("type");
    setParams(next, { replace: true });
    // Only a settled change of the box moves the URL.
  }, [debouncedType]);
  useEffect(() => setTypeInput(type), [type]);

  const paging = usePaging(type);
  const q = useQuery({
    queryKey: ["dlq", { type, token: paging.token }],
    queryFn: ({ signal }) => api.listDead({ type, pageSize: 50, pageToken: paging.token }, signal),
    placeholderData: keepPreviousData,
    refetchInterval: 5000,
  });

  const [selected, setSelected] = useState<Set<string>>(new Set());
  // Jobs retried from here leave the list at once, before the next fetch confirms it: a row is
  // hidden while it is the version from before the retry (a job that fails again and comes back
  // to the queue is newer, and shows again).
  const [gone, setGone] = useState<Map<string, number>>(new Map());
  const [busy, setBusy] = useState<Set<string>>(new Set());
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [rowErrors, setRowErrors] = useState<Record<string, string>>({});
  const canOperate = useCanOperate();

  const jobs = useMemo(
    () =>
      (q.data?.jobs ?? []).filter((j) => {
        const retriedAt = gone.get(j.id);
        return retriedAt === undefined || Date.parse(j.updatedAt ?? "") > retriedAt;
      }),
    [q.data, gone],
  );
  const visibleSelected = jobs.filter((j) => selected.has(j.id)).map((j) => j.id);
  const allSelected = jobs.length > 0 && visibleSelected.length === jobs.length;

  function toggle(id: string) {
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  }

  async function retry(ids: string[]) {
    if (ids.length === 0) return;
    setOutcome(null);
    setBusy((b) => new Set([...b, ...ids]));
    const results = await Promise.allSettled(ids.map((id) => api.retryDead(id)));
    const ok: string[] = [];
    const retriedAt = new Map<string, number>();
    const errs: Record<string, string> = {};
    results.forEach((r, i) => {
      if (r.status === "fulfilled") {
        ok.push(ids[i]);
        const t = Date.parse(r.value.updatedAt ?? "");
        retriedAt.set(ids[i], Number.isNaN(t) ? Date.now() : t);
      } else errs[ids[i]] = errorMessage(r.reason);
    });
    setBusy((b) => new Set([...b].filter((id) => !ids.includes(id))));
    setGone((g) => new Map([...g, ...retriedAt]));
    setSelected((s) => new Set([...s].filter((id) => !ok.includes(id))));
    setRowErrors((prev) => {
      const n = { ...prev };
      for (const id of ok) delete n[id];
      return { ...n, ...errs };
    });
    const failed = Object.keys(errs).length;
    if (failed === 0) {
      setOutcome({ kind: "ok", text: ok.length === 1 ? "1 job sent back to PENDING." : `${ok.length} jobs sent back to PENDING.` });
    } else {
      const first = Object.values(errs)[0];
      setOutcome({
        kind: "error",
        text: `${ok.length} retried, ${failed} failed${failed === 1 ? `: ${first}` : ` (first error: ${first})`}`,
      });
    }
    void qc.invalidateQueries({ queryKey: ["dlq"] });
    void qc.invalidateQueries({ queryKey: ["jobs"] });
    for (const id of ok) void qc.invalidateQueries({ queryKey: ["job", id] });
  }

  return (
    <section>
      <div className="page-head">
        <h1>Dead-letter queue</h1>
      </div>

      <div className="filters">
        <label>
          <span>Type</span>
          <input type="search" value={typeInput} placeholder="any type" onChange={(e) => setTypeInput(e.target.value)} data-testid="dlq-filter-type" spellCheck={false} />
        </label>
        <div className="spacer" />
        {canOperate && (
          <button
            type="button"
            className="btn btn-primary"
            disabled={visibleSelected.length === 0 || visibleSelected.some((id) => busy.has(id))}
            onClick={() => retry(visibleSelected)}
            data-testid="retry-selected"
          >
            Retry selected ({visibleSelected.length})
          </button>
        )}
      </div>

      {canOperate && !q.error && <BulkBar filter={type ? { type } : {}} status="DEAD" />}
      {outcome && (
        <div className={`banner ${outcome.kind === "ok" ? "banner-ok" : "banner-error"}`} role={outcome.kind === "ok" ? "status" : "alert"} data-testid="dlq-outcome">
          {outcome.text}
        </div>
      )}
      <ErrorBanner error={q.error} title="Cannot list the dead-letter queue" onRetry={() => q.refetch()} />

      {q.data && jobs.length === 0 && (
        <p className="muted empty" data-testid="dlq-empty">
          The dead-letter queue is empty{type ? ` for type ${type}` : ""}{paging.page > 1 ? " on this page" : ""}.
        </p>
      )}
      {jobs.length > 0 && (
        <div className="table-wrap">
          <table className="table table-dlq" data-testid="dlq-table">
            <thead>
              <tr>
                <th className="check">
                  <input
                    type="checkbox"
                    aria-label="Select all"
                    checked={allSelected}
                    onChange={() => setSelected(allSelected ? new Set() : new Set(jobs.map((j) => j.id)))}
                    data-testid="select-all"
                  />
                </th>
                <th>Job</th>
                <th>Type</th>
                <th>Last error</th>
                <th className="num hide-narrow">Attempts</th>
                <th className="hide-narrow">Died</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id} data-job-id={j.id} className={selected.has(j.id) ? "selected" : undefined}>
                  <td className="check">
                    <input type="checkbox" aria-label={`Select ${j.id}`} checked={selected.has(j.id)} onChange={() => toggle(j.id)} />
                  </td>
                  <td>
                    <Link to={`/jobs/${encodeURIComponent(j.id)}`} className="mono" title={j.id}>
                      {j.id}
                    </Link>
                  </td>
                  <td className="mono">{j.type}</td>
                  <td className="error-cell">
                    <span className="error-text" title={j.lastError}>
                      {j.lastError || <span className="muted">no error recorded</span>}
                    </span>
                    {rowErrors[j.id] && (
                      <span className="row-error" role="alert">
                        Retry failed: {rowErrors[j.id]}
                      </span>
                    )}
                  </td>
                  <td className="num hide-narrow">{j.attempts}</td>
                  <td className="hide-narrow" title={formatTime(j.updatedAt)}>
                    {formatRelative(j.updatedAt, now)}
                  </td>
                  <td className="actions">
                    {canOperate && (
                      <button type="button" className="btn btn-small" onClick={() => retry([j.id])} disabled={busy.has(j.id)} data-testid="retry-one">
                        {busy.has(j.id) ? "Retrying…" : "Retry"}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {!q.data && q.isPending && <p className="muted">Loading…</p>}
      {q.data && (paging.page > 1 || q.data.nextPageToken) && (
        <Pager paging={paging} nextToken={q.data.nextPageToken} />
      )}
    </section>
  );
}
