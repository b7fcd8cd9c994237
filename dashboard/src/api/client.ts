// The gateway's REST routes (from the google.api.http annotations in broker.proto), on the
// dashboard's own origin.
import { auth, authHeaders } from "./auth";
import {
  type EnqueueRequest,
  type EnqueueResult,
  type Job,
  type JobFilter,
  type JobOrder,
  type JobPage,
  type JobStatus,
  type Queue,
  type QueueChange,
  type QueueStats,
  type Schedule,
  type SchedulePage,
  normalizeCount,
  normalizeJob,
  normalizeJobPage,
  normalizeQueue,
  normalizeQueues,
  normalizeSchedule,
  normalizeSchedulePage,
  normalizeStats,
  normalizeThroughput,
  type ThroughputReport,
} from "./types";

// gRPC status code names, for errors that carry only the number.
const GRPC_CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

/** An error answer of the API ({code, message, details}) or a failure to reach it at all. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: number | null;
  readonly details: unknown[];

  /** What the call was for ("retry dead jobs"), to say what a 403 forbids. */
  readonly action: string | null;

  constructor(message: string, status: number, code: number | null = null, details: unknown[] = [], action: string | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.action = action;
  }

  /** "INVALID_ARGUMENT" etc., when the gateway said which. */
  get codeName(): string | null {
    return this.code !== null && this.code >= 0 && this.code < GRPC_CODES.length ? GRPC_CODES[this.code] : null;
  }

  /** The request field the message names ("type: must be ..." → "type"), if any. */
  get field(): string | null {
    // A refused token or role is about the caller, whatever its message starts with.
    if (this.status === 401 || this.status === 403) return null;
    return fieldOf(this.message);
  }
}

/** The field an INVALID_ARGUMENT message starts with, in the proto's snake_case ("max_retries"). */
export function fieldOf(message: string): string | null {
  const m = /^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*:\s/.exec(message);
  return m ? m[1] : null;
}

/** What a call does, in words, for "your token's role cannot …". */
export function actionOf(method: string, path: string): string | null {
  const p = path.split("?")[0];
  if (method === "POST" && (/^\/v1\/dlq\/[^/]+:retry$/.test(p) || p === "/v1/dlq:retry")) return "retry dead jobs";
  if (method === "POST" && p === "/v1/dlq:purge") return "purge dead jobs";
  if (method === "POST" && (/^\/v1\/jobs\/[^/]+:cancel$/.test(p) || p === "/v1/jobs:cancel")) return "cancel jobs";
  if (method === "POST" && (p === "/v1/jobs" || p === "/v1/jobs:batch")) return "enqueue jobs";
  if (method === "GET" && p.startsWith("/v1/stats")) return "view the queue's stats";
  if (method === "GET" && p.startsWith("/v1/dlq")) return "view the dead-letter queue";
  if (method === "GET" && p.startsWith("/v1/jobs")) return "view jobs";
  if (method === "PUT" && p.startsWith("/v1/schedules/")) return "change schedules";
  if (method === "DELETE" && p.startsWith("/v1/schedules/")) return "delete schedules";
  if (method === "GET" && p.startsWith("/v1/schedules")) return "view schedules";
  if ((method === "PATCH" || method === "POST") && p.startsWith("/v1/queues/")) return "change queues";
  if (method === "GET" && p.startsWith("/v1/queues")) return "view queues";
  return null;
}

interface RequestOptions {
  signal?: AbortSignal;
  /** Send this token instead of the signed-in one, and leave a 401 to the caller (sign-in check). */
  token?: string;
}

async function request(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<unknown> {
  const token = opts.token ?? auth.token();
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      headers: {
        Accept: "application/json",
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...authHeaders(token),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(`cannot reach the gateway (${e instanceof Error ? e.message : String(e)})`, 0);
  }
  const text = await resp.text();
  let data: unknown = undefined;
  let err: ApiError | null = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      err = resp.ok
        ? new ApiError(`the gateway answered something that is not JSON (HTTP ${resp.status})`, resp.status)
        : new ApiError(`HTTP ${resp.status}: ${text.slice(0, 200)}`, resp.status);
    }
  }
  if (!err && !resp.ok) {
    const d = (data ?? {}) as { code?: unknown; message?: unknown; details?: unknown };
    const message = typeof d.message === "string" && d.message ? d.message : `HTTP ${resp.status} ${resp.statusText}`.trim();
    err = new ApiError(message, resp.status, typeof d.code === "number" ? d.code : null, Array.isArray(d.details) ? d.details : [], actionOf(method, path));
  }
  if (err) {
    // Any refused token brings up the sign-in view (unless this call was the sign-in check).
    if (err.status === 401 && opts.token === undefined) auth.unauthorized(err.message, token);
    throw err;
  }
  return data;
}

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** GET /v1/jobs's query: every filter optional (times in RFC 3339), `order` NEWEST when absent. */
export interface ListJobsParams {
  status?: JobStatus | "";
  type?: string;
  typePrefix?: string;
  concurrencyKey?: string;
  idempotencyKey?: string;
  workerId?: string;
  createdAfter?: string;
  createdBefore?: string;
  updatedAfter?: string;
  updatedBefore?: string;
  /** Only jobs whose run_at is later. */
  runAfter?: string;
  order?: JobOrder | "";
  /** A job id, or an idempotency or concurrency key (exact). */
  query?: string;
  pageSize?: number;
  pageToken?: string;
}

/** A bulk call: `dryRun` answers how many it would change and changes nothing. Purge and cancel
 * refuse an empty filter without `all` (the consent to act on every job); retry has no `all`. */
async function bulk(path: string, filter: JobFilter, dryRun: boolean, takesAll: boolean): Promise<number> {
  const empty = Object.values(filter).every((v) => v === undefined || v === "" || (Array.isArray(v) && v.length === 0));
  const body: Record<string, unknown> = { filter, ...(dryRun ? { dryRun: true } : {}), ...(takesAll && empty ? { all: true } : {}) };
  return normalizeCount(await request("POST", path, body));
}

// A job id that cannot exist: cancelling "it" changes nothing, but tells whether the role may.
const NO_JOB = "00000000-0000-0000-0000-000000000000";

function schedulePath(name: string): string {
  return `/v1/schedules/${encodeURIComponent(name)}`;
}

function queuePath(type: string): string {
  return `/v1/queues/${encodeURIComponent(type)}`;
}

/** A QueueChange as the PATCH body: proto3 JSON, the period as a Duration ("1.5s"). */
function queueBody(change: QueueChange): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (change.concurrencyLimit !== undefined) body.concurrencyLimit = change.concurrencyLimit;
  if (change.keyConcurrencyLimit !== undefined) body.keyConcurrencyLimit = change.keyConcurrencyLimit;
  // Present but empty (limit 0, no period) is how the API removes a rate limit.
  if (change.rateLimit !== undefined) {
    body.rateLimit = change.rateLimit ? { limit: change.rateLimit.limit, period: `${Number(change.rateLimit.periodSeconds.toFixed(3))}s` } : {};
  }
  return body;
}

export const api = {
  /** Whether the gateway accepts `token` (GET /v1/stats with it); throws the ApiError if not. */
  async checkToken(token: string, signal?: AbortSignal): Promise<void> {
    await request("GET", "/v1/stats", undefined, { token, signal });
  },

  async stats(signal?: AbortSignal): Promise<QueueStats> {
    return normalizeStats(await request("GET", "/v1/stats", undefined, { signal }));
  },

  async listJobs(p: ListJobsParams, signal?: AbortSignal): Promise<JobPage> {
    const status = p.status && p.status !== "STATUS_UNSPECIFIED" ? p.status : undefined;
    return normalizeJobPage(await request("GET", `/v1/jobs${query({ ...p, status })}`, undefined, { signal }));
  },

  async getJob(id: string, signal?: AbortSignal): Promise<Job> {
    return normalizeJob(await request("GET", `/v1/jobs/${encodeURIComponent(id)}`, undefined, { signal }));
  },

  async cancelJob(id: string, reason = ""): Promise<Job> {
    return normalizeJob(await request("POST", `/v1/jobs/${encodeURIComponent(id)}:cancel`, reason ? { reason } : {}));
  },

  async listDead(p: { type?: string; pageSize?: number; pageToken?: string }, signal?: AbortSignal): Promise<JobPage> {
    return normalizeJobPage(
      await request("GET", `/v1/dlq${query({ type: p.type, pageSize: p.pageSize, pageToken: p.pageToken })}`, undefined, { signal }),
    );
  },

  async retryDead(id: string): Promise<Job> {
    return normalizeJob(await request("POST", `/v1/dlq/${encodeURIComponent(id)}:retry`, {}));
  },

  /** Retries every dead job `filter` matches; how many went (or, dry, would go) back to PENDING. */
  retryDeadJobs(filter: JobFilter, dryRun = false): Promise<number> {
    return bulk("/v1/dlq:retry", filter, dryRun, false);
  },

  /** Deletes every dead job `filter` matches; how many were (or would be) deleted. */
  purgeDeadJobs(filter: JobFilter, dryRun = false): Promise<number> {
    return bulk("/v1/dlq:purge", filter, dryRun, true);
  },

  /** Cancels every unfinished job `filter` matches; how many were (or would be) cancelled. */
  cancelJobs(filter: JobFilter, dryRun = false): Promise<number> {
    return bulk("/v1/jobs:cancel", filter, dryRun, true);
  },

  /**
   * Whether the signed-in token may change things (cancel, retry, pause): a dry-run cancel of a
   * job that cannot exist answers 403 to a read-only role and changes nothing for any.
   */
  async canOperate(signal?: AbortSignal): Promise<boolean> {
    try {
      await request("POST", "/v1/jobs:cancel", { filter: { ids: [NO_JOB] }, dryRun: true }, { signal });
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) return false;
      throw e;
    }
  },

  /** Per-type throughput and queue wait per minute over the last `windowSeconds`. */
  async throughput(windowSeconds = 3600, signal?: AbortSignal): Promise<ThroughputReport> {
    return normalizeThroughput(await request("GET", `/v1/stats/throughput${query({ window: `${windowSeconds}s` })}`, undefined, { signal }));
  },

  async listSchedules(p: { pageSize?: number; pageToken?: string }, signal?: AbortSignal): Promise<SchedulePage> {
    return normalizeSchedulePage(
      await request("GET", `/v1/schedules${query({ pageSize: p.pageSize, pageToken: p.pageToken })}`, undefined, { signal }),
    );
  },

  /**
   * Pause or resume a schedule. PutSchedule replaces the whole schedule, so it is read back
   * first and sent as the broker has it now with only `paused` changed: a change someone made
   * since the list was fetched survives, and the read-only fields in it are ignored by the API.
   */
  async setSchedulePaused(name: string, paused: boolean): Promise<Schedule> {
    const current = await request("GET", schedulePath(name));
    const body = { ...(current as Record<string, unknown>), paused };
    return normalizeSchedule(await request("PUT", schedulePath(name), body));
  },

  async deleteSchedule(name: string): Promise<void> {
    await request("DELETE", schedulePath(name));
  },

  async listQueues(signal?: AbortSignal): Promise<Queue[]> {
    return normalizeQueues(await request("GET", "/v1/queues", undefined, { signal }));
  },

  async setQueuePaused(type: string, paused: boolean): Promise<Queue> {
    return normalizeQueue(await request("POST", `${queuePath(type)}:${paused ? "pause" : "resume"}`, {}));
  },

  /** Changes only the settings in `change` (a PATCH without a mask): the others stay as they are. */
  async updateQueue(type: string, change: QueueChange): Promise<Queue> {
    return normalizeQueue(await request("PATCH", queuePath(type), queueBody(change)));
  },

  async enqueue(req: EnqueueRequest): Promise<EnqueueResult> {
    const data = (await request("POST", "/v1/jobs", req)) as { job?: unknown; created?: unknown } | undefined;
    return { job: normalizeJob(data?.job), created: data?.created === true };
  },
};

export function errorMessage(e: unknown): string {
  if (e instanceof ApiError && e.status === 403) {
    // Never swallowed: say what the role may not do, then the broker's own words.
    const what = e.action ? `your token's role cannot ${e.action}` : "your token's role does not allow this";
    return `${what}: ${e.message} (PERMISSION_DENIED)`;
  }
  if (e instanceof ApiError) {
    const name = e.codeName;
    return name && name !== "UNKNOWN" ? `${e.message} (${name})` : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}
