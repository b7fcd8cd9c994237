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
  order: JobOrder | "";
  /** Jobs leased to this worker (from the Workers page). */
  workerId: string;
  pageSize: number;
}

export const DEFAULT_PAGE_SIZE = 50;

export function readJobsQuery(params: URLSearchParams): JobsQuery {
  const status = params.get("status") ?? "";
  const order = params.get("order") ?? "";
  return {
    status: (STATUSES as readonly string[]).includes(status) ? (status as JobStatus) : "",
    type: params.get("type") ?? "",
    q: params.get("q") ?? "",
    createdAfter: params.get("createdAfter") ?? "",
    createdBefore: params.get("createdBefore") ?? "",
    order: (ORDERS as readonly string[]).includes(order) ? (order as JobOrder) : "",
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
  return parts.join(", ");
}
