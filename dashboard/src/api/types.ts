// The shapes of the broker's messages as the gateway sends them: the proto3 JSON mapping of
// proto/forge/v1/broker.proto. On the wire int64 is a string, fields at their zero value are
// left out, and Struct is a plain object; the normalizers below turn that into these types with
// every field present and every count a number.

export const STATUSES = ["PENDING", "PROCESSING", "COMPLETED", "DEAD", "CANCELLED"] as const;
export type JobStatus = (typeof STATUSES)[number] | "STATUS_UNSPECIFIED";

export type JsonObject = { [key: string]: unknown };

export interface Job {
  id: string;
  type: string;
  payload: JsonObject;
  priority: number;
  maxRetries: number;
  attempts: number;
  status: JobStatus;
  runAt: string | null;
  createdAt: string | null;
  updatedAt: string | null;
  lastError: string;
  result: JsonObject | null;
  workerId: string;
  leaseExpiresAt: string | null;
  idempotencyKey: string;
  /** The schedule that enqueued the job; empty for any other job. */
  schedule: string;
  /** One entry per failed attempt, oldest first. */
  errors: AttemptError[];
  /** When the current or last attempt started. */
  leasedAt: string | null;
  /** When the last attempt ended; null while one runs. */
  finishedAt: string | null;
}

/** ListJobs' orders: newest created first (the default), oldest first, soonest run_at first,
 * highest priority first. */
export const ORDERS = ["NEWEST", "OLDEST", "RUN_AT", "PRIORITY"] as const;
export type JobOrder = (typeof ORDERS)[number];

/** Which jobs a bulk call (retry, purge, cancel) acts on: every job matching all fields given,
 * as ListJobs lists them (RFC 3339 times). */
export interface JobFilter {
  type?: string;
  typePrefix?: string;
  concurrencyKey?: string;
  idempotencyKey?: string;
  createdAfter?: string;
  createdBefore?: string;
  runAfter?: string;
  status?: JobStatus;
  query?: string;
  ids?: string[];
}

/** A failed attempt: what it raised, which worker ran it, and when it started and ended. */
export interface AttemptError {
  attempt: number;
  at: string | null;
  error: string;
  workerId: string;
  startedAt: string | null;
}

export interface JobPage {
  jobs: Job[];
  nextPageToken: string;
}

export interface EnqueueResult {
  job: Job;
  created: boolean;
}

export interface Counts {
  pending: number;
  scheduled: number;
  processing: number;
  completed: number;
  dead: number;
  cancelled: number;
  oldestPendingAgeSeconds: number;
}

export interface TypeStats extends Counts {
  type: string;
  /** Whether the type's queue is paused (nothing of it is leased). */
  paused: boolean;
}

export interface ThroughputPoint {
  minute: string;
  completed: number;
  failed: number;
}

export interface QueueWait {
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  count: number;
  windowSeconds: number;
}

export interface WorkerInfo {
  workerId: string;
  types: string[];
  inFlight: number;
  maxInFlight: number;
  connectedAt: string | null;
  lastSeen: string | null;
  brokerId: string;
}

export interface QueueStats extends Counts {
  computedAt: string | null;
  types: TypeStats[];
  throughput: ThroughputPoint[];
  queueWait: QueueWait;
  workers: WorkerInfo[];
}

/** One type's completed and failed attempts per minute. */
export interface TypeThroughput {
  type: string;
  points: ThroughputPoint[];
}

/** Queue wait of the jobs leased in one minute. */
export interface WaitPoint {
  minute: string;
  p50Ms: number;
  p99Ms: number;
  count: number;
}

/** GET /v1/stats/throughput: a point per minute of the window, oldest first. */
export interface ThroughputReport {
  types: TypeThroughput[];
  queueWait: WaitPoint[];
}

/** The job a schedule enqueues at each fire time. */
export interface ScheduleJob {
  type: string;
  payload: JsonObject;
  priority: number;
  maxRetries: number;
}

export interface Schedule {
  name: string;
  /** The cron expression, or "" for a schedule on a fixed period. */
  cron: string;
  /** The fixed period in seconds, or null for a cron schedule. */
  everySeconds: number | null;
  timezone: string;
  job: ScheduleJob;
  paused: boolean;
  /** Absent while paused. */
  nextRunAt: string | null;
  lastRunAt: string | null;
  lastJobId: string;
  createdAt: string | null;
  updatedAt: string | null;
}

export interface SchedulePage {
  schedules: Schedule[];
  nextPageToken: string;
}

/** A sliding-window rate: at most `limit` starts in any `periodSeconds`. */
export interface RateLimit {
  limit: number;
  periodSeconds: number;
}

/** A job type's queue: its flow-control settings (0 or null: unlimited) and its counts. */
export interface Queue {
  type: string;
  paused: boolean;
  concurrencyLimit: number;
  keyConcurrencyLimit: number;
  rateLimit: RateLimit | null;
  stats: Counts;
}

/** What a PATCH /v1/queues/{type} changes: only the fields given; a null rate limit removes it. */
export interface QueueChange {
  concurrencyLimit?: number;
  keyConcurrencyLimit?: number;
  rateLimit?: RateLimit | null;
}

/** What the enqueue form sends (POST /v1/jobs). Absent optional fields take the broker's defaults. */
export interface EnqueueRequest {
  type: string;
  payload: JsonObject;
  priority?: number;
  maxRetries?: number;
  runAt?: string;
  idempotencyKey?: string;
}

type Raw = Record<string, unknown>;

function obj(v: unknown): Raw {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Raw) : {};
}

/** int64 arrives as a string, int32/double as a number, and zero as nothing at all. */
export function num(v: unknown): number {
  if (typeof v === "number") return Number.isFinite(v) ? v : 0;
  if (typeof v === "string" && v.trim() !== "") {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }
  return 0;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function time(v: unknown): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function status(v: unknown): JobStatus {
  if (typeof v === "string" && (STATUSES as readonly string[]).includes(v)) return v as JobStatus;
  // Enums may also come as their numbers (a gateway option); map them too.
  if (typeof v === "number" && v >= 1 && v <= STATUSES.length) return STATUSES[v - 1];
  return "STATUS_UNSPECIFIED";
}

export function normalizeJob(raw: unknown): Job {
  const r = obj(raw);
  return {
    id: str(r.id),
    type: str(r.type),
    payload: obj(r.payload),
    priority: num(r.priority),
    maxRetries: num(r.maxRetries ?? r.max_retries),
    attempts: num(r.attempts),
    status: status(r.status),
    runAt: time(r.runAt ?? r.run_at),
    createdAt: time(r.createdAt ?? r.created_at),
    updatedAt: time(r.updatedAt ?? r.updated_at),
    lastError: str(r.lastError ?? r.last_error),
    result: r.result === undefined || r.result === null ? null : obj(r.result),
    workerId: str(r.workerId ?? r.worker_id),
    leaseExpiresAt: time(r.leaseExpiresAt ?? r.lease_expires_at),
    idempotencyKey: str(r.idempotencyKey ?? r.idempotency_key),
    schedule: str(r.schedule),
    errors: arr(r.errors).map(normalizeAttemptError),
    leasedAt: time(r.leasedAt ?? r.leased_at),
    finishedAt: time(r.finishedAt ?? r.finished_at),
  };
}

function normalizeAttemptError(raw: unknown): AttemptError {
  const r = obj(raw);
  return {
    attempt: num(r.attempt),
    at: time(r.at),
    error: str(r.error),
    workerId: str(r.workerId ?? r.worker_id),
    startedAt: time(r.startedAt ?? r.started_at),
  };
}

/** The `{"count": "n"}` answer of a bulk call (retry, purge, cancel). */
export function normalizeCount(raw: unknown): number {
  return num(obj(raw).count);
}

export function normalizeJobPage(raw: unknown): JobPage {
  const r = obj(raw);
  return {
    jobs: arr(r.jobs).map(normalizeJob),
    nextPageToken: str(r.nextPageToken ?? r.next_page_token),
  };
}

/**
 * A google.protobuf.Duration in seconds: proto3 JSON writes it as "30s" or "1.500s"; the
 * {seconds, nanos} object form is read too. Null when absent or unreadable.
 */
export function durationSeconds(v: unknown): number | null {
  if (typeof v === "string") {
    const m = /^(\d+(?:\.\d+)?)s$/.exec(v.trim());
    return m ? Number(m[1]) : null;
  }
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Raw;
    const total = num(o.seconds) + num(o.nanos) / 1e9;
    return total > 0 ? total : null;
  }
  return null;
}

export function normalizeSchedule(raw: unknown): Schedule {
  const r = obj(raw);
  const job = obj(r.job);
  return {
    name: str(r.name),
    cron: str(r.cron),
    everySeconds: durationSeconds(r.every),
    timezone: str(r.timezone),
    job: {
      type: str(job.type),
      payload: obj(job.payload),
      priority: num(job.priority),
      maxRetries: num(job.maxRetries ?? job.max_retries),
    },
    paused: r.paused === true,
    nextRunAt: time(r.nextRunAt ?? r.next_run_at),
    lastRunAt: time(r.lastRunAt ?? r.last_run_at),
    lastJobId: str(r.lastJobId ?? r.last_job_id),
    createdAt: time(r.createdAt ?? r.created_at),
    updatedAt: time(r.updatedAt ?? r.updated_at),
  };
}

export function normalizeSchedulePage(raw: unknown): SchedulePage {
  const r = obj(raw);
  return {
    schedules: arr(r.schedules).map(normalizeSchedule),
    nextPageToken: str(r.nextPageToken ?? r.next_page_token),
  };
}

export function normalizeQueue(raw: unknown): Queue {
  const r = obj(raw);
  const rate = obj(r.rateLimit ?? r.rate_limit);
  const limit = num(rate.limit);
  const periodSeconds = durationSeconds(rate.period);
  return {
    type: str(r.type),
    paused: r.paused === true,
    concurrencyLimit: num(r.concurrencyLimit ?? r.concurrency_limit),
    keyConcurrencyLimit: num(r.keyConcurrencyLimit ?? r.key_concurrency_limit),
    rateLimit: limit > 0 && periodSeconds !== null ? { limit, periodSeconds } : null,
    stats: counts(obj(r.stats)),
  };
}

export function normalizeQueues(raw: unknown): Queue[] {
  return arr(obj(raw).queues).map(normalizeQueue);
}

function counts(r: Raw): Counts {
  return {
    pending: num(r.pending),
    scheduled: num(r.scheduled),
    processing: num(r.processing),
    completed: num(r.completed),
    dead: num(r.dead),
    cancelled: num(r.cancelled),
    oldestPendingAgeSeconds: num(r.oldestPendingAgeSeconds ?? r.oldest_pending_age_seconds),
  };
}

export function normalizeStats(raw: unknown): QueueStats {
  let r = obj(raw);
  // A streamed message may be wrapped grpc-gateway style: {"result": {...}}.
  if ("result" in r && typeof r.result === "object") r = obj(r.result);
  const qw = obj(r.queueWait ?? r.queue_wait);
  return {
    ...counts(r),
    computedAt: time(r.computedAt ?? r.computed_at),
    types: arr(r.types).map((t) => ({ type: str(obj(t).type), paused: obj(t).paused === true, ...counts(obj(t)) })),
    throughput: arr(r.throughput).map(throughputPoint),
    queueWait: {
      p50Ms: num(qw.p50Ms ?? qw.p50_ms),
      p90Ms: num(qw.p90Ms ?? qw.p90_ms),
      p99Ms: num(qw.p99Ms ?? qw.p99_ms),
      count: num(qw.count),
      windowSeconds: num(qw.windowSeconds ?? qw.window_seconds),
    },
    workers: arr(r.workers).map((w) => {
      const o = obj(w);
      return {
        workerId: str(o.workerId ?? o.worker_id),
        types: arr(o.types).map(str),
        inFlight: num(o.inFlight ?? o.in_flight),
        maxInFlight: num(o.maxInFlight ?? o.max_in_flight),
        connectedAt: time(o.connectedAt ?? o.connected_at),
        lastSeen: time(o.lastSeen ?? o.last_seen),
        brokerId: str(o.brokerId ?? o.broker_id),
      };
    }),
  };
}

function throughputPoint(p: unknown): ThroughputPoint {
  const o = obj(p);
  return { minute: str(o.minute), completed: num(o.completed), failed: num(o.failed) };
}

export function normalizeThroughput(raw: unknown): ThroughputReport {
  const r = obj(raw);
  return {
    types: arr(r.types).map((t) => ({ type: str(obj(t).type), points: arr(obj(t).points).map(throughputPoint) })),
    queueWait: arr(r.queueWait ?? r.queue_wait).map((p) => {
      const o = obj(p);
      return { minute: str(o.minute), p50Ms: num(o.p50Ms ?? o.p50_ms), p99Ms: num(o.p99Ms ?? o.p99_ms), count: num(o.count) };
    }),
  };
}

export const FINAL_STATUSES: readonly JobStatus[] = ["COMPLETED", "CANCELLED"];
export const CANCELLABLE: readonly JobStatus[] = ["PENDING", "PROCESSING", "DEAD"];
