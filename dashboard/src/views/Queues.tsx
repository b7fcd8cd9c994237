import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useId, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { ApiError, api, errorMessage } from "../api/client";
import type { Queue, QueueChange, RateLimit } from "../api/types";
import { Badge } from "../components/Badge";
import { type Column, DataTable } from "../components/DataTable";
import { EmptyState } from "../components/EmptyState";
import { ErrorBanner } from "../components/ErrorBanner";
import { ReadOnlyNote } from "../components/ReadOnlyNote";
import { useCanOperate } from "../hooks/useCanOperate";
import { useRowActions } from "../hooks/useRowActions";
import { formatCount } from "../lib/format";
import { formatPeriod } from "../lib/timing";

const SET_COMMAND = "forge queue set email --concurrency 5 --rate 20/s";

/** A limit where 0 means none. */
function limitText(n: number): string {
  return n > 0 ? formatCount(n) : "∞";
}

function rateText(r: RateLimit | null): string {
  return r ? `${formatCount(r.limit)} / ${formatPeriod(r.periodSeconds)}` : "—";
}

function describe(q: Queue): string {
  return `at most ${limitText(q.concurrencyLimit)} running, ${limitText(q.keyConcurrencyLimit)} per concurrency key, rate ${rateText(q.rateLimit)}`;
}

// --- the limits form ------------------------------------------------------------------------------

interface LimitsForm {
  concurrency: string;
  keyConcurrency: string;
  rateLimit: string;
  ratePeriod: string;
}
type LimitField = keyof LimitsForm;
type LimitErrors = Partial<Record<LimitField, string>>;

function formOf(q: Queue): LimitsForm {
  return {
    concurrency: String(q.concurrencyLimit),
    keyConcurrency: String(q.keyConcurrencyLimit),
    rateLimit: q.rateLimit ? String(q.rateLimit.limit) : "",
    ratePeriod: q.rateLimit ? String(q.rateLimit.periodSeconds) : "",
  };
}

const WHOLE = /^\d+$/;

/** The form's mistakes the browser can see; the ranges are the broker's to check. */
function validate(f: LimitsForm): LimitErrors {
  const errors: LimitErrors = {};
  if (!WHOLE.test(f.concurrency.trim())) errors.concurrency = "must be a whole number, 0 for unlimited";
  if (!WHOLE.test(f.keyConcurrency.trim())) errors.keyConcurrency = "must be a whole number, 0 for unlimited";
  const limit = f.rateLimit.trim();
  const period = f.ratePeriod.trim();
  if (limit !== "" && !WHOLE.test(limit)) errors.rateLimit = "must be a whole number; empty for no rate limit";
  else if (limit !== "" && Number(limit) > 0 && !(Number(period) > 0)) errors.ratePeriod = "must be a number of seconds above 0 with a limit";
  else if ((limit === "" || Number(limit) === 0) && period !== "") errors.ratePeriod = "needs a limit; empty both for no rate limit";
  return errors;
}

function rateOf(f: LimitsForm): RateLimit | null {
  const limit = Number(f.rateLimit.trim() || "0");
  return limit > 0 ? { limit, periodSeconds: Number(f.ratePeriod) } : null;
}

/** Only what the form changed from `base`, so a change someone else made to another setting stays. */
function changeOf(base: Queue, f: LimitsForm): QueueChange {
  const change: QueueChange = {};
  if (Number(f.concurrency) !== base.concurrencyLimit) change.concurrencyLimit = Number(f.concurrency);
  if (Number(f.keyConcurrency) !== base.keyConcurrencyLimit) change.keyConcurrencyLimit = Number(f.keyConcurrency);
  const rate = rateOf(f);
  if (rate?.limit !== base.rateLimit?.limit || rate?.periodSeconds !== base.rateLimit?.periodSeconds) change.rateLimit = rate;
  return change;
}

/** The form field an INVALID_ARGUMENT names ("queue.rate_limit.period: ..."). */
const FIELD_OF: Record<string, LimitField> = {
  "queue.concurrency_limit": "concurrency",
  "queue.key_concurrency_limit": "keyConcurrency",
  "queue.rate_limit.limit": "rateLimit",
  "queue.rate_limit.period": "ratePeriod",
  "queue.rate_limit": "ratePeriod",
};

type Saved = { queue: Queue } | { refused: ApiError };

function LimitsEditor({ base, busy, onSave, onClose }: {
  base: Queue;
  busy: boolean;
  /** Sends the change; a 400 comes back to be shown by its field, anything else is the row's. */
  onSave: (change: QueueChange) => Promise<Saved | undefined>;
  onClose: () => void;
}) {
  const uid = useId();
  const [form, setForm] = useState<LimitsForm>(() => formOf(base));
  const [errors, setErrors] = useState<LimitErrors>({});
  const [formError, setFormError] = useState<string | null>(null);

  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setFormError(null);
    const errs = validate(form);
    setErrors(errs);
    if (Object.keys(errs).length > 0) return;
    const change = changeOf(base, form);
    if (Object.keys(change).length === 0) return onClose();
    const saved = await onSave(change);
    if (saved && "refused" in saved) {
      const field = saved.refused.field ? FIELD_OF[saved.refused.field] : undefined;
      if (field) setErrors({ [field]: errorMessage(saved.refused) });
      else setFormError(errorMessage(saved.refused));
    }
  }

  function input(field: LimitField, label: string, hint: string, focus = false) {
    const id = `${uid}-${field}`;
    return (
      <label className="field" htmlFor={id}>
        <span>{label}</span>
        <input
          id={id}
          value={form[field]}
          onChange={(e) => {
            const value = e.target.value;
            setForm((f) => ({ ...f, [field]: value }));
            setErrors(({ [field]: _, ...rest }) => rest);
          }}
          inputMode="decimal"
          autoComplete="off"
          // The form opens below the table: focusing its first field brings it into view.
          autoFocus={focus}
          aria-invalid={errors[field] ? true : undefined}
          aria-describedby={errors[field] ? `${id}-error` : undefined}
          data-testid={`input-${field}`}
        />
        <span className="hint">{hint}</span>
        {errors[field] && (
          <span className="field-error" id={`${id}-error`} role="alert" data-testid={`error-${field}`}>
            {errors[field]}
          </span>
        )}
      </label>
    );
  }

  return (
    <form className="form queue-limits" onSubmit={submit} noValidate aria-label={`Limits of ${base.type}`} data-testid="limits-form">
      <h2>
        Limits of <span className="mono">{base.type}</span>
      </h2>
      {formError && (
        <div className="banner banner-error" role="alert" data-testid="limits-error">
          {formError}
        </div>
      )}
      <div className="field-grid">
        {input("concurrency", "Concurrency", "Jobs running at once, fleet-wide; 0: unlimited", true)}
        {input("keyConcurrency", "Key concurrency", "Jobs of one concurrency key running at once; 0: unlimited")}
      </div>
      <div className="field-grid">
        {input("rateLimit", "Rate limit", "Starts per period; empty: no rate limit")}
        {input("ratePeriod", "Period (seconds)", "The window the rate counts starts in, up to a day")}
      </div>
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="save-limits">
          {busy ? "Saving…" : "Save"}
        </button>
        <button type="button" className="btn btn-ghost" onClick={onClose} data-testid="cancel-limits">
          Cancel
        </button>
      </div>
    </form>
  );
}

// --- the page -------------------------------------------------------------------------------------

export function Queues() {
  const qc = useQueryClient();
  const [params] = useSearchParams();
  // The overview links here with ?type= to point at one type's queue.
  const highlight = params.get("type") ?? "";
  const q = useQuery({
    queryKey: ["queues"],
    queryFn: ({ signal }) => api.listQueues(signal),
    // The counts move with every lease and ack, and someone may pause a queue from the CLI.
    refetchInterval: 2000,
  });
  const actions = useRowActions();
  const canOperate = useCanOperate();
  const readOnly = !canOperate || actions.forbidden !== null;
  const [outcome, setOutcome] = useState<string | null>(null);
  const [editing, setEditing] = useState<Queue | null>(null);

  /** Shows `changed` in its row at once, then lists again. */
  async function settle(changed: Queue) {
    // A listing sent before the change would bring the old row back when it lands.
    await qc.cancelQueries({ queryKey: ["queues"] });
    qc.setQueryData<Queue[]>(["queues"], (queues) => queues?.map((x) => (x.type === changed.type ? changed : x)));
    void qc.invalidateQueries({ queryKey: ["queues"] });
  }

  async function setPaused(queue: Queue, paused: boolean) {
    setOutcome(null);
    const changed = await actions.run(queue.type, () => api.setQueuePaused(queue.type, paused));
    if (!changed) return;
    await settle(changed);
    setOutcome(paused ? `Queue ${queue.type} paused: none of its jobs is leased until it is resumed; jobs running now finish.` : `Queue ${queue.type} resumed.`);
  }

  async function saveLimits(base: Queue, change: QueueChange): Promise<Saved | undefined> {
    setOutcome(null);
    const saved = await actions.run<Saved>(base.type, async () => {
      try {
        return { queue: await api.updateQueue(base.type, change) };
      } catch (e) {
        if (e instanceof ApiError && e.status === 400) return { refused: e };
        throw e;
      }
    });
    if (saved && "queue" in saved) {
      await settle(saved.queue);
      setEditing(null);
      setOutcome(`Queue ${base.type}: ${describe(saved.queue)}.`);
    }
    return saved;
  }

  const refused = readOnly ? "Your token's role cannot change queues" : undefined;
  const columns: Column<Queue>[] = [
    {
      key: "type",
      header: "Type",
      className: "name-cell",
      cell: (x) => (
        <>
          <Link to={`/jobs?type=${encodeURIComponent(x.type)}`} className="mono">
            {x.type}
          </Link>
          {actions.errors[x.type] && (
            <span className="row-error" role="alert">
              {actions.errors[x.type]}
            </span>
          )}
        </>
      ),
    },
    { key: "pending", header: "Pending", className: "num", cell: (x) => formatCount(x.stats.pending) },
    { key: "scheduled", header: "Scheduled", className: "num hide-narrow", cell: (x) => formatCount(x.stats.scheduled) },
    {
      key: "running",
      header: <abbr title="Processing now, of the concurrency limit">Running / limit</abbr>,
      className: "num",
      cell: (x) => (
        <span data-testid="queue-running">
          {formatCount(x.stats.processing)} / {limitText(x.concurrencyLimit)}
        </span>
      ),
    },
    {
      key: "dead",
      header: "Dead",
      className: "num hide-narrow",
      cell: (x) => (x.stats.dead ? <Link to={`/dlq?type=${encodeURIComponent(x.type)}`} className="text-bad">{formatCount(x.stats.dead)}</Link> : 0),
    },
    { key: "key", header: "Per key", className: "num hide-narrow", cell: (x) => <span data-testid="queue-key-limit">{limitText(x.keyConcurrencyLimit)}</span> },
    { key: "rate", header: "Rate", className: "num", cell: (x) => <span data-testid="queue-rate">{rateText(x.rateLimit)}</span> },
    {
      key: "state",
      header: "State",
      cell: (x) => (
        <Badge tone={x.paused ? "warn" : "ok"} testId="queue-state">
          {x.paused ? "Paused" : "Active"}
        </Badge>
      ),
    },
    {
      key: "actions",
      header: "",
      className: "actions",
      cell: (x) => {
        const busy = actions.busy.has(x.type);
        return (
          <span className="row-actions">
            <button type="button" className="btn btn-small" disabled={busy || readOnly} title={refused} onClick={() => setPaused(x, !x.paused)} data-testid="toggle-pause">
              {x.paused ? "Resume" : "Pause"}
            </button>
            <button type="button" className="btn btn-small" disabled={busy || readOnly} title={refused} onClick={() => setEditing(x)} data-testid="edit-limits">
              Edit limits
            </button>
          </span>
        );
      },
    },
  ];

  const queues = q.data ?? [];
  return (
    <section>
      <div className="page-head">
        <h1>Queues</h1>
      </div>

      {outcome && (
        <div className="banner banner-ok" role="status" data-testid="queues-outcome">
          {outcome}
        </div>
      )}
      <ErrorBanner error={actions.forbidden} title="Read-only" />
      {!canOperate && <ReadOnlyNote what="queues" />}
      <ErrorBanner error={q.error} title="Cannot list queues" onRetry={() => q.refetch()} />

      {q.data && queues.length === 0 && (
        <EmptyState testId="queues-empty" command={SET_COMMAND}>
          No queues yet. Each job type is a queue, listed once it has jobs or settings; limit one with the CLI:
        </EmptyState>
      )}
      {queues.length > 0 && (
        <DataTable
          rows={queues}
          columns={canOperate ? columns : columns.filter((c) => c.key !== "actions")}
          rowKey={(x) => x.type}
          rowProps={(x) => ({ "data-type": x.type, "data-paused": String(x.paused), className: x.type === highlight || x.type === editing?.type ? "selected" : undefined })}
          className="table-queues"
          testId="queues-table"
        />
      )}
      {!q.data && q.isPending && <p className="muted">Loading…</p>}
      {editing && !readOnly && (
        <LimitsEditor
          key={editing.type}
          base={editing}
          busy={actions.busy.has(editing.type)}
          onSave={(change) => saveLimits(editing, change)}
          onClose={() => setEditing(null)}
        />
      )}
    </section>
  );
}
