import { describe, expect, it } from "vitest";
import { type EnqueueForm, formFieldOf, parsePayload, validateForm } from "./validate";

const ok: EnqueueForm = { type: "email", payload: '{"to": "a@b.co"}', priority: "0", maxRetries: "3", runAt: "", idempotencyKey: "" };

describe("validateForm", () => {
  it("accepts a good form", () => {
    expect(validateForm(ok)).toEqual({});
  });

  it("names each bad field", () => {
    const errs = validateForm({ type: "bad type!", payload: "[1]", priority: "2000", maxRetries: "1.5", runAt: "garbage", idempotencyKey: "k".repeat(256) });
    expect(Object.keys(errs).sort()).toEqual(["idempotencyKey", "maxRetries", "payload", "priority", "runAt", "type"]);
    expect(errs.priority).toBe("must be in [-1000, 1000]");
    expect(errs.maxRetries).toBe("must be a whole number");
    expect(errs.payload).toMatch(/JSON object/);
  });

  it("requires a type", () => {
    expect(validateForm({ ...ok, type: "" }).type).toBe("is required");
  });

  it("lets empty numbers take the broker's defaults", () => {
    expect(validateForm({ ...ok, priority: "", maxRetries: "" })).toEqual({});
  });
});

describe("parsePayload", () => {
  it("reports JSON syntax errors", () => {
    const r = parsePayload('{"a": }');
    expect("error" in r && r.error).toMatch(/^not valid JSON/);
  });
  it("treats an empty box as {}", () => {
    expect(parsePayload("  ")).toEqual({ value: {} });
  });
  it("rejects non-objects", () => {
    for (const t of ["null", "3", '"x"', "[]"]) expect("error" in parsePayload(t)).toBe(true);
  });
});

describe("formFieldOf", () => {
  it("maps the broker's snake_case fields to form fields", () => {
    expect(formFieldOf("max_retries")).toBe("maxRetries");
    expect(formFieldOf("run_at")).toBe("runAt");
    expect(formFieldOf("idempotency_key")).toBe("idempotencyKey");
    expect(formFieldOf("payload.a.b")).toBe("payload");
    expect(formFieldOf("page_size")).toBe(null);
    expect(formFieldOf(null)).toBe(null);
  });
});
