import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useId, useState } from "react";
import { useNavigate } from "react-router-dom";
import { ApiError, api, errorMessage } from "../api/client";
import type { EnqueueRequest } from "../api/types";
import { localInputToIso } from "../lib/format";
import { type EnqueueForm, type FieldErrors, type FormField, formFieldOf, parsePayload, validateForm } from "../lib/validate";

const EMPTY: EnqueueForm = {
  type: "",
  payload: "{\n  \n}",
  priority: "0",
  maxRetries: "3",
  runAt: "",
  idempotencyKey: "",
};

const EXAMPLES: Record<string, string> = {
  email: '{\n  "to": "user@example.com",\n  "subject": "Hello from Forge"\n}',
  webhook: '{\n  "url": "https://example.com/hook",\n  "body": {"event": "ping"}\n}',
  report: '{\n  "rows": 100000\n}',
};

function toRequest(f: EnqueueForm): EnqueueRequest {
  const payload = parsePayload(f.payload);
  const req: EnqueueRequest = { type: f.type.trim(), payload: "value" in payload ? payload.value : {} };
  if (f.priority.trim() !== "") req.priority = Number(f.priority);
  if (f.maxRetries.trim() !== "") req.maxRetries = Number(f.maxRetries);
  const runAt = localInputToIso(f.runAt);
  if (runAt) req.runAt = runAt;
  if (f.idempotencyKey) req.idempotencyKey = f.idempotencyKey;
  return req;
}

export function Enqueue() {
  const navigate = useNavigate();
  const qc = useQueryClient();
  const uid = useId();
  const [form, setForm] = useState<EnqueueForm>(EMPTY);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [formError, setFormError] = useState<string | null>(null);

  const submit = useMutation({
    mutationFn: (req: EnqueueRequest) => api.enqueue(req),
    onSuccess: ({ job, created }) => {
      void qc.invalidateQueries({ queryKey: ["jobs"] });
      qc.setQueryData(["job", job.id], job);
      navigate(`/jobs/${encodeURIComponent(job.id)}`, { state: { created } });
    },
    onError: (e) => {
      // INVALID_ARGUMENT names the field ("max_retries: must be in [0, 100], got 500"): show the
      // message under that field; anything else above the form.
      const field = e instanceof ApiError ? formFieldOf(e.field) : null;
      if (field) {
        const problem = e.message.replace(/^[^:]+:\s*/, "");
        setErrors((prev) => ({ ...prev, [field]: problem }));
        setFormError(`The broker refused the job: ${e.message}`);
      } else {
        setFormError(errorMessage(e));
      }
    },
  });

  function set(field: FormField, value: string) {
    setForm((f) => ({ ...f, [field]: value }));
    // Payload errors update as you type; other fields' errors go away when edited.
    setErrors((prev) => {
      const next = { ...prev };
      if (field === "payload") {
        const p = parsePayload(value);
        if ("error" in p) next.payload = p.error;
        else delete next.payload;
      } else delete next[field];
      return next;
    });
  }

  function onSubmit(e: React.FormEvent) {
    e.preventDefault();
    setFormError(null);
    const errs = validateForm(form);
    setErrors(errs);
    if (Object.keys(errs).length > 0) {
      const first = Object.keys(errs)[0];
      document.getElementById(`${uid}-${first}`)?.focus();
      return;
    }
    submit.mutate(toRequest(form));
  }

  const fieldProps = (field: FormField) => ({
    id: `${uid}-${field}`,
    name: field,
    value: form[field],
    "aria-invalid": errors[field] ? true : undefined,
    "aria-describedby": errors[field] ? `${uid}-${field}-error` : undefined,
    onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) => set(field, e.target.value),
    "data-testid": `input-${field}`,
  });

  const errorFor = (field: FormField) =>
    errors[field] ? (
      <span className="field-error" id={`${uid}-${field}-error`} role="alert" data-testid={`error-${field}`}>
        {errors[field]}
      </span>
    ) : null;

  return (
    <section className="narrow-page">
      <div className="page-head">
        <h1>Enqueue a job</h1>
      </div>
      {formError && (
        <div className="banner banner-error" role="alert" data-testid="form-error">
          {formError}
        </div>
      )}
      <form className="form" onSubmit={onSubmit} noValidate>
        <label className="field" htmlFor={`${uid}-type`}>
          <span>Type</span>
          <input {...fieldProps("type")} placeholder="email" autoComplete="off" spellCheck={false} list={`${uid}-types`} required />
          <datalist id={`${uid}-types`}>
            {Object.keys(EXAMPLES).map((t) => (
              <option key={t} value={t} />
            ))}
          </datalist>
          {errorFor("type")}
        </label>

        <div className="field">
          <div className="field-label-row">
            <label htmlFor={`${uid}-payload`}>Payload (JSON object)</label>
            {EXAMPLES[form.type.trim()] && (
              <button type="button" className="btn btn-small btn-ghost" onClick={() => set("payload", EXAMPLES[form.type.trim()])}>
                Use the {form.type.trim()} example
              </button>
            )}
          </div>
          <textarea {...fieldProps("payload")} rows={8} spellCheck={false} className="mono" />
          {errorFor("payload")}
        </div>

        <div className="field-grid">
          <label className="field" htmlFor={`${uid}-priority`}>
            <span>Priority</span>
            <input {...fieldProps("priority")} type="number" min={-1000} max={1000} step={1} inputMode="numeric" />
            <span className="hint">−1000 to 1000, higher runs first</span>
            {errorFor("priority")}
          </label>
          <label className="field" htmlFor={`${uid}-maxRetries`}>
            <span>Max retries</span>
            <input {...fieldProps("maxRetries")} type="number" min={0} max={100} step={1} inputMode="numeric" />
            <span className="hint">0 to 100 retries after the first attempt</span>
            {errorFor("maxRetries")}
          </label>
        </div>

        <div className="field-grid">
          <label className="field" htmlFor={`${uid}-runAt`}>
            <span>Run at (optional)</span>
            <input {...fieldProps("runAt")} type="datetime-local" step={1} />
            <span className="hint">Your local time; empty runs now</span>
            {errorFor("runAt")}
          </label>
          <label className="field" htmlFor={`${uid}-idempotencyKey`}>
            <span>Idempotency key (optional)</span>
            <input {...fieldProps("idempotencyKey")} autoComplete="off" spellCheck={false} />
            <span className="hint">Enqueuing the same key again returns the existing job</span>
            {errorFor("idempotencyKey")}
          </label>
        </div>

        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={submit.isPending} data-testid="submit-enqueue">
            {submit.isPending ? "Enqueuing…" : "Enqueue"}
          </button>
          <button
            type="button"
            className="btn btn-ghost"
            onClick={() => {
              setForm(EMPTY);
              setErrors({});
              setFormError(null);
            }}
          >
            Reset
          </button>
        </div>
      </form>
    </section>
  );
}
