import { describe, expect, it } from "vitest";
import { rawStats } from "../test/fakes";
import { normalizeJob, normalizeJobPage, normalizeStats, num } from "./types";

describe("num", () => {
  it("reads int64 strings, numbers, and absent zeros", () => {
    expect(num("12")).toBe(12);
    expect(num(3)).toBe(3);
    expect(num(undefined)).toBe(0);
    expect(num("")).toBe(0);
    expect(num("abc")).toBe(0);
    expect(num(Number.NaN)).toBe(0);
  });
});

describe("normalizeStats", () => {
  it("turns int64 strings into numbers and fills in omitted zero fields", () => {
    const s = normalizeStats(rawStats());
    expect(s.pending).toBe(12);
    expect(s.cancelled).toBe(0); // omitted on the wire
    expect(s.types[0]).toEqual({
      type: "email", pending: 12, scheduled: 0, processing: 2, completed: 40, dead: 1, cancelled: 0, oldestPendingAgeSeconds: 4.5,
    });
    expect(s.throughput[0]).toEqual({ minute: "2026-01-01T00:00:00Z", completed: 5, failed: 0 });
    expect(s.queueWait).toEqual({ p50Ms: 12, p90Ms: 40, p99Ms: 250, count: 9, windowSeconds: 300 });
    expect(s.workers[0]).toMatchObject({ workerId: "w-1", inFlight: 2, maxInFlight: 8, connectedAt: null, brokerId: "b1" });
  });

  it("unwraps a grpc-gateway stream frame {result: ...}", () => {
    expect(normalizeStats({ result: { pending: "7" } }).pending).toBe(7);
  });

  it("gives a complete empty snapshot for an empty message", () => {
    const s = normalizeStats({});
    expect(s).toMatchObject({ pending: 0, dead: 0, types: [], throughput: [], workers: [], computedAt: null });
    expect(s.queueWait.count).toBe(0);
  });
});

describe("normalizeJob", () => {
  it("defaults omitted fields (proto3 leaves zero values out)", () => {
    const j = normalizeJob({ id: "x", type: "email", status: "PENDING" });
    expect(j).toMatchObject({ priority: 0, maxRetries: 0, attempts: 0, lastError: "", result: null, workerId: "", leaseExpiresAt: null, payload: {} });
  });

  it("accepts original proto field names and numeric enums", () => {
    const j = normalizeJob({ id: "x", max_retries: 5, last_error: "boom", status: 4, worker_id: "w" });
    expect(j).toMatchObject({ maxRetries: 5, lastError: "boom", status: "DEAD", workerId: "w" });
  });

  it("keeps result objects", () => {
    expect(normalizeJob({ result: { ok: true } }).result).toEqual({ ok: true });
  });
});

describe("normalizeJobPage", () => {
  it("handles an empty page (no jobs key, no token)", () => {
    expect(normalizeJobPage({})).toEqual({ jobs: [], nextPageToken: "" });
  });
});
