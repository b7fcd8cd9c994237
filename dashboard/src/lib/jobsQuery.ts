// The Jobs list's filter as it lives in the address (/jobs?status=DEAD&type=email…), and the
// API requests it turns into: a ListJobs query, and the same set of jobs as a bulk call's filter.
import type { ListJobsParams } from "../api/client";
import { type JobFilter, type JobOrder, type JobStatus, ORDERS, STATUSES } from "../api/types";

export interface JobsQuery {
  status: JobStatus | "";
  /** A type, or a prefix when it ends with "*" ("email.*"). */
  type: string;
  /** Search: an idempotency or concurrency key, or a job id (exact). */
  q: string;
  createdAfter: string;
  createdBefore: string;
  /** Jobs whose run_at is later (with PENDING and the time the list was opened: the scheduled ones). */
  runAfter: string;
  /** Never RUN_AT or PRIORITY where `orderAllowed` says no. */
  order: JobOrder | "";
  /** Jobs leased to this worker (from the Workers page). */
  workerId: string;
  pageSize: number;
}

export const DEFAULT_PAGE_SIZE = 50;

/**
 * Whether ListJobs takes `order` with `status`: RUN_AT and PRIORITY list one status other than
 * COMPLETED (the broker indexes finished jobs in those orders only when DEAD or CANCELLED, so
 * that acks stay cheap), so not on the All and Completed tabs.
 */
export function orderAllowed(status: JobStatus | "", order: JobOrder | ""): boolean {
  return !(order === "RUN_AT" || order === "PRIORITY") || (status !== "" && status !== "COMPLETED");
}

/** The scheduled jobs as of `now` (ms): PENDING with run_at later, soonest first. */
export function scheduledJobsPath(now: number): string {
  return `/jobs?status=PENDING&order=RUN_AT&runAfter=${encodeURIComponent(new Date(now).toISOString())}`;
}

export function readJobsQuery(params: URLSearchParams): JobsQuery {
  const status = (STATUSES as readonly string[]).includes(params.get("status") ?? "") ? (params.get("status") as JobStatus) : "";
  const order = (ORDERS as readonly string[]).includes(params.get("order") ?? "") ? (params.get("order") as JobOrder) : "";
  return {
    status,
    type: params.get("type") ?? "",
    q: params.get("q") ?? "",
    createdAfter: params.get("createdAfter") ?? "",
    createdBefore: params.get("createdBefore") ?? "",
    runAfter: params.get("runAfter") ?? "",
    order: orderAllowed(status, order) ? order : "",
    workerId: params.get("workerId") ?? "",
    pageSize: Number(params.get("pageSize")) || DEFAULT_PAGE_SIZE,
  };
}

/** `type` as the API's type or type prefix ("email.*" → prefix "email."). */
function typeFields(type: string): { type?: string; typePrefix?: string } {
  const t = type.trim();
  if (!t) return {};
  return t.endsWith("*") ? { typePrefix: t.slice(0, -1) } : { type: t };
}

export function listParams(j: JobsQuery): ListJobsParams {
  return {
    status: j.status,
    ...typeFields(j.type),
    query: j.q || undefined,
    createdAfter: j.createdAfter || undefined,
    createdBefore: j.createdBefore || undefined,
    runAfter: j.runAfter || undefined,
    workerId: j.workerId || undefined,
    order: j.order,
    pageSize: j.pageSize,
  };
}

/**
 * The jobs the list shows, as a bulk call's filter; null when the list filters on something a
 * bulk call cannot (the worker), so "all matching" would mean something else.
 */
export function bulkFilter(j: JobsQuery): JobFilter | null {
  if (j.workerId) return null;
  const f: JobFilter = { ...typeFields(j.type) };
  if (j.status) f.status = j.status;
  if (j.q) f.query = j.q;
  if (j.createdAfter) f.createdAfter = j.createdAfter;
  if (j.createdBefore) f.createdBefore = j.createdBefore;
  if (j.runAfter) f.runAfter = j.runAfter;
  return f;
}

/** The filter in words, for a confirmation: "of type email, created after …". */
export function describeFilter(f: JobFilter): string {
  const parts: string[] = [];
  if (f.type) parts.push(`of type ${f.type}`);
  if (f.typePrefix) parts.push(`of a type starting ${f.typePrefix}`);
  if (f.query) parts.push(`matching ${f.query}`);
  if (f.createdAfter) parts.push(`created after ${f.createdAfter}`);
  if (f.createdBefore) parts.push(`created before ${f.createdBefore}`);
  if (f.runAfter) parts.push(`to run after ${f.runAfter}`);
  return parts.join(", ");
}
