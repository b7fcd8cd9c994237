import { describe, expect, it } from "vitest";
import { rawStats } from "../test/fakes";
import { durationSeconds, normalizeJob, normalizeJobPage, normalizeQueue, normalizeSchedule, normalizeSchedulePage, normalizeStats, num } from "./types";

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
      type: "email", paused: false, pending: 12, scheduled: 0, processing: 2, completed: 40, dead: 1, cancelled: 0, oldestPendingAgeSeconds: 4.5,
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

  it("reads the schedule that enqueued the job, empty for others", () => {
    expect(normalizeJob({ schedule: "nightly" }).schedule).toBe("nightly");
    expect(normalizeJob({}).schedule).toBe("");
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

describe("durationSeconds", () => {
  it("reads proto3 JSON durations and the {seconds, nanos} form", () => {
    expect(durationSeconds("30s")).toBe(30);
    expect(durationSeconds("1.500s")).toBe(1.5);
    expect(durationSeconds({ seconds: "90", nanos: 500_000_000 })).toBe(90.5);
    expect(durationSeconds(undefined)).toBe(null);
    expect(durationSeconds("30")).toBe(null);
  });
});

describe("normalizeQueue", () => {
  it("reads a queue with its settings left out as unlimited, active and without a rate", () => {
    expect(normalizeQueue({ type: "email", stats: { type: "email", processing: "2" } })).toEqual({
      type: "email",
      paused: false,
      concurrencyLimit: 0,
      keyConcurrencyLimit: 0,
      rateLimit: null,
      stats: { pending: 0, scheduled: 0, processing: 2, completed: 0, dead: 0, cancelled: 0, oldestPendingAgeSeconds: 0 },
    });
  });

  it("reads the rate's period as a Duration", () => {
    const q = normalizeQueue({ type: "sms", paused: true, concurrencyLimit: 3, keyConcurrencyLimit: 1, rateLimit: { limit: 20, period: "0.500s" } });
    expect(q).toMatchObject({ paused: true, concurrencyLimit: 3, keyConcurrencyLimit: 1, rateLimit: { limit: 20, periodSeconds: 0.5 } });
  });
});

describe("normalizeSchedule", () => {
  it("fills in what proto3 JSON leaves out: no every, no run times, not paused", () => {
    const s = normalizeSchedule({ name: "nightly", cron: "0 3 * * *", job: { type: "report", max_retries: 2 } });
    expect(s).toEqual({
      name: "nightly", cron: "0 3 * * *", everySeconds: null, timezone: "", paused: false,
      job: { type: "report", payload: {}, priority: 0, maxRetries: 2 },
      nextRunAt: null, lastRunAt: null, lastJobId: "", createdAt: null, updatedAt: null,
    });
  });

  it("reads a periodic schedule with its run times and last job", () => {
    const s = normalizeSchedule({ name: "ping", every: "30s", paused: true, lastRunAt: "2026-01-01T00:00:00Z", last_job_id: "j1" });
    expect(s).toMatchObject({ cron: "", everySeconds: 30, paused: true, lastRunAt: "2026-01-01T00:00:00Z", lastJobId: "j1", nextRunAt: null });
  });

  it("reads a page of schedules", () => {
    expect(normalizeSchedulePage({})).toEqual({ schedules: [], nextPageToken: "" });
    expect(normalizeSchedulePage({ schedules: [{ name: "a" }], nextPageToken: "t" }).schedules[0].name).toBe("a");
  });
});
