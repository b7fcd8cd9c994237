// The gateway's REST routes (from the google.api.http annotations in broker.proto), on the
// dashboard's own origin.
import {
  type EnqueueRequest,
  type EnqueueResult,
  type Job,
  type JobPage,
  type JobStatus,
  type QueueStats,
  normalizeJob,
  normalizeJobPage,
  normalizeStats,
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

  constructor(message: string, status: number, code: number | null = null, details: unknown[] = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** "INVALID_ARGUMENT" etc., when the gateway said which. */
  get codeName(): string | null {
    return this.code !== null && this.code >= 0 && this.code < GRPC_CODES.length ? GRPC_CODES[this.code] : null;
  }

  /** The request field the message names ("type: must be ..." → "type"), if any. */
  get field(): string | null {
    return fieldOf(this.message);
  }
}

/** The field an INVALID_ARGUMENT message starts with, in the proto's snake_case ("max_retries"). */
export function fieldOf(message: string): string | null {
  const m = /^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*:\s/.exec(message);
  return m ? m[1] : null;
}

async function request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      headers: body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(`cannot reach the gateway (${e instanceof Error ? e.message : String(e)})`, 0);
  }
  const text = await resp.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      if (!resp.ok) throw new ApiError(`HTTP ${resp.status}: ${text.slice(0, 200)}`, resp.status);
      throw new ApiError(`the gateway answered something that is not JSON (HTTP ${resp.status})`, resp.status);
    }
  }
  if (!resp.ok) {
    const d = (data ?? {}) as { code?: unknown; message?: unknown; details?: unknown };
    const message = typeof d.message === "string" && d.message ? d.message : `HTTP ${resp.status} ${resp.statusText}`.trim();
    throw new ApiError(message, resp.status, typeof d.code === "number" ? d.code : null, Array.isArray(d.details) ? d.details : []);
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

export interface ListJobsParams {
  status?: JobStatus | "";
  type?: string;
  pageSize?: number;
  pageToken?: string;
}

export const api = {
  async stats(signal?: AbortSignal): Promise<QueueStats> {
    return normalizeStats(await request("GET", "/v1/stats", undefined, signal));
  },

  async listJobs(p: ListJobsParams, signal?: AbortSignal): Promise<JobPage> {
    const status = p.status && p.status !== "STATUS_UNSPECIFIED" ? p.status : undefined;
    return normalizeJobPage(
      await request("GET", `/v1/jobs${query({ status, type: p.type, pageSize: p.pageSize, pageToken: p.pageToken })}`, undefined, signal),
    );
  },

  async getJob(id: string, signal?: AbortSignal): Promise<Job> {
    return normalizeJob(await request("GET", `/v1/jobs/${encodeURIComponent(id)}`, undefined, signal));
  },

  async cancelJob(id: string, reason = ""): Promise<Job> {
    return normalizeJob(await request("POST", `/v1/jobs/${encodeURIComponent(id)}:cancel`, reason ? { reason } : {}));
  },

  async listDead(p: { type?: string; pageSize?: number; pageToken?: string }, signal?: AbortSignal): Promise<JobPage> {
    return normalizeJobPage(
      await request("GET", `/v1/dlq${query({ type: p.type, pageSize: p.pageSize, pageToken: p.pageToken })}`, undefined, signal),
    );
  },

  async retryDead(id: string): Promise<Job> {
    return normalizeJob(await request("POST", `/v1/dlq/${encodeURIComponent(id)}:retry`, {}));
  },

  async enqueue(req: EnqueueRequest): Promise<EnqueueResult> {
    const data = (await request("POST", "/v1/jobs", req)) as { job?: unknown; created?: unknown } | undefined;
    return { job: normalizeJob(data?.job), created: data?.created === true };
  },
};

export function errorMessage(e: unknown): string {
  if (e instanceof ApiError) {
    const name = e.codeName;
    return name && name !== "UNKNOWN" ? `${e.message} (${name})` : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}
