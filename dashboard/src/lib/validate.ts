// Client-side checks of the enqueue form, mirroring the broker's (broker/validate.py), so most
// mistakes are shown by their field before anything is sent. The broker still has the last word.
import type { JsonObject } from "../api/types";

export const TYPE_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

export interface EnqueueForm {
  type: string;
  payload: string;
  priority: string;
  maxRetries: string;
  runAt: string;
  idempotencyKey: string;
}

export type FormField = keyof EnqueueForm;
export type FieldErrors = Partial<Record<FormField, string>>;

export function parsePayload(text: string): { value: JsonObject } | { error: string } {
  if (text.trim() === "") return { value: {} };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { error: `not valid JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    return { error: "must be a JSON object, like {\"to\": \"a@example.com\"}" };
  }
  if (new TextEncoder().encode(text).length > MAX_PAYLOAD_BYTES) {
    return { error: "is larger than 1 MiB" };
  }
  return { value: v as JsonObject };
}

function intIn(text: string, lo: number, hi: number): string | null {
  if (!/^-?\d+$/.test(text.trim())) return "must be a whole number";
  const n = Number(text);
  if (n < lo || n > hi) return `must be in [${lo}, ${hi}]`;
  return null;
}

export function validateForm(f: EnqueueForm): FieldErrors {
  const errors: FieldErrors = {};
  if (!f.type) errors.type = "is required";
  else if (!TYPE_RE.test(f.type)) errors.type = "must be 1 to 128 characters of A-Z a-z 0-9 _ . : -";
  const p = parsePayload(f.payload);
  if ("error" in p) errors.payload = p.error;
  if (f.priority.trim() !== "") {
    const e = intIn(f.priority, -1000, 1000);
    if (e) errors.priority = e;
  }
  if (f.maxRetries.trim() !== "") {
    const e = intIn(f.maxRetries, 0, 100);
    if (e) errors.maxRetries = e;
  }
  if (f.runAt && Number.isNaN(new Date(f.runAt).getTime())) errors.runAt = "is not a valid date and time";
  if (f.idempotencyKey.length > 255) errors.idempotencyKey = "must be at most 255 characters";
  return errors;
}

/** The form field a server message names ("max_retries: ..." → "maxRetries"), if it is one. */
export function formFieldOf(serverField: string | null): FormField | null {
  if (!serverField) return null;
  const base = serverField.split(/[.[]/)[0];
  const camel = base.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  const fields: FormField[] = ["type", "payload", "priority", "maxRetries", "runAt", "idempotencyKey"];
  return (fields as string[]).includes(camel) ? (camel as FormField) : null;
}
