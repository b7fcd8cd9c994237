// Test doubles for the browser's network edges: fetch (routed by "METHOD /path") and the stats
// stream's connections.
import { vi } from "vitest";

export type Handler = (req: { method: string; url: URL; body: unknown; headers: Headers }) => { status?: number; body?: unknown } | Promise<{ status?: number; body?: unknown }>;

export interface FetchMock {
  calls: { method: string; path: string; body: unknown; headers: Headers }[];
  fn: ReturnType<typeof vi.fn>;
}

/** The id of the dry-run cancel the pages with buttons send to learn whether the role may change things. */
export const ROLE_CHECK_ID = "00000000-0000-0000-0000-000000000000";

function isRoleCheck(method: string, path: string, body: unknown): boolean {
  const ids = (body as { filter?: { ids?: unknown[] } } | undefined)?.filter?.ids;
  return method === "POST" && path === "/v1/jobs:cancel" && Array.isArray(ids) && ids[0] === ROLE_CHECK_ID;
}

/**
 * Route fetch calls to handlers keyed "GET /v1/jobs" (path without query); unknown routes get
 * 404. The role check is answered apart (an admin's answer, or a producer's 403 with
 * `readOnly`) and left out of `calls`, which holds what the page itself asked.
 */
export function mockFetch(routes: Record<string, Handler>, { readOnly = false }: { readOnly?: boolean } = {}): FetchMock {
  const calls: FetchMock["calls"] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), "http://dash.test");
    const method = (init?.method ?? "GET").toUpperCase();
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    const headers = new Headers(init?.headers);
    const roleCheck = isRoleCheck(method, url.pathname, body);
    if (!roleCheck) calls.push({ method, path: url.pathname + url.search, body, headers });
    const handler = roleCheck ? roleAnswer(readOnly) : routes[`${method} ${url.pathname}`];
    const res = handler ? await handler({ method, url, body, headers }) : { status: 404, body: { code: 5, message: `no route ${method} ${url.pathname}`, details: [] } };
    const status = res.status ?? 200;
    return new Response(res.body === undefined ? "" : JSON.stringify(res.body), {
      status,
      headers: { "content-type": "application/json" },
    });
  });
  vi.stubGlobal("fetch", fn);
  return { calls, fn };
}

function roleAnswer(readOnly: boolean): Handler {
  return () => (readOnly ? { status: 403, body: { code: 7, message: "role producer may not call CancelJobs", details: [] } } : { body: {} });
}

/**
 * The stats stream's side of the network: a fetch (`FakeFeed.fetch`, for StreamOptions.fetchImpl)
 * whose every call is a connection the test drives by hand. `emit` resolves once the stream has
 * read and handled the chunk (it asked for the next one); `fail`, `end` and a refused answer
 * resolve once the stream let the connection go (aborted it).
 */
export class FakeFeed {
  static instances: FakeFeed[] = [];
  /** Answers for the next connections, in order, instead of an open event stream. */
  static answers: { status: number; body: unknown }[] = [];
  readonly url: string;
  readonly headers: Headers;
  readonly signal: AbortSignal | null;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private pulls = 0;
  private pullWaiters: { after: number; resolve: () => void }[] = [];
  private readonly aborted: Promise<void>;
  private readonly encoder = new TextEncoder();
  readonly body: ReadableStream<Uint8Array>;

  static readonly fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
    const feed = new FakeFeed(String(input), init);
    FakeFeed.instances.push(feed);
    return feed.respond();
  }) as typeof fetch;

  constructor(url: string, init?: RequestInit) {
    this.url = url;
    this.headers = new Headers(init?.headers);
    this.signal = init?.signal ?? null;
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.controller = c;
        },
        pull: () => {
          this.pulls += 1;
          const ready = this.pullWaiters.filter((w) => this.pulls > w.after);
          this.pullWaiters = this.pullWaiters.filter((w) => this.pulls <= w.after);
          for (const w of ready) w.resolve();
        },
      },
      { highWaterMark: 0 },
    );
    this.aborted = new Promise((resolve) => {
      if (!this.signal) return;
      if (this.signal.aborted) resolve();
      this.signal.addEventListener("abort", () => {
        // As a real fetch does: the body fails with an AbortError.
        try {
          this.controller.error(new DOMException("The operation was aborted.", "AbortError"));
        } catch {
          // already closed or errored
        }
        resolve();
      });
    });
  }

  static reset() {
    FakeFeed.instances = [];
    FakeFeed.answers = [];
  }

  static get last(): FakeFeed {
    return FakeFeed.instances[FakeFeed.instances.length - 1];
  }

  get isAborted(): boolean {
    return this.signal?.aborted ?? false;
  }

  private async respond(): Promise<Response> {
    if (this.signal?.aborted) throw new DOMException("The operation was aborted.", "AbortError");
    const answer = FakeFeed.answers.shift();
    if (answer) return new Response(JSON.stringify(answer.body), { status: answer.status, headers: { "content-type": "application/json" } });
    return new Response(this.body, { status: 200, headers: { "content-type": "text/event-stream" } });
  }

  /** Send raw bytes of the event stream; resolves once they were read and handled. */
  send(chunk: string | Uint8Array): Promise<void> {
    const done = new Promise<void>((resolve) => this.pullWaiters.push({ after: this.pulls, resolve }));
    this.controller.enqueue(typeof chunk === "string" ? this.encoder.encode(chunk) : chunk);
    return Promise.race([done, this.aborted]);
  }

  /** Deliver one `data:` event, as the gateway frames it. */
  emit(data: unknown): Promise<void> {
    return this.send(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  }

  /** The connection failing (no argument), or the gateway's in-band `event: error` with data. */
  fail(data?: unknown): Promise<void> {
    if (data === undefined) this.controller.error(new TypeError("network error"));
    else this.controller.enqueue(this.encoder.encode(`event: error\ndata: ${JSON.stringify(data)}\n\n`));
    return this.aborted;
  }

  /** The gateway ending the response. */
  end(): Promise<void> {
    this.controller.close();
    return this.aborted;
  }

  /** Resolves once the stream let this connection go. */
  closed(): Promise<void> {
    return this.aborted;
  }
}

export function rawJob(over: Record<string, unknown> = {}) {
  return {
    id: "01a22590-1d5c-7098-b965-863f2ba7b9f0",
    type: "email",
    payload: { to: "a@example.com" },
    status: "PENDING",
    runAt: "2026-01-01T00:00:00Z",
    createdAt: "2026-01-01T00:00:00Z",
    updatedAt: "2026-01-01T00:00:00Z",
    priority: 0,
    maxRetries: 3,
    ...over,
  };
}

export function rawStats(over: Record<string, unknown> = {}) {
  return {
    computedAt: "2026-01-01T00:00:00Z",
    pending: "12",
    scheduled: "3",
    processing: "2",
    completed: "40",
    dead: "1",
    oldestPendingAgeSeconds: 4.5,
    types: [{ type: "email", pending: "12", processing: "2", completed: "40", dead: "1", oldestPendingAgeSeconds: 4.5 }],
    throughput: [
      { minute: "2026-01-01T00:00:00Z", completed: 5 },
      { minute: "2026-01-01T00:01:00Z", completed: 7, failed: 1 },
    ],
    queueWait: { p50Ms: 12, p90Ms: 40, p99Ms: 250, count: "9", windowSeconds: 300 },
    workers: [{ workerId: "w-1", types: ["email"], inFlight: 2, maxInFlight: 8, lastSeen: "2026-01-01T00:01:00Z", brokerId: "b1" }],
    ...over,
  };
}

/** A schedule as the gateway answers it (every field present but the unset timestamps). */
export function rawSchedule(over: Record<string, unknown> = {}) {
  return {
    name: "nightly",
    cron: "0 3 * * *",
    timezone: "Europe/Berlin",
    job: { type: "report", payload: { kind: "daily" }, priority: 0, maxRetries: 3, idempotencyKey: "" },
    paused: false,
    nextRunAt: "2030-01-02T02:00:00Z",
    lastJobId: "",
    createdAt: "2026-01-01T00:00:00Z",
    updatedAt: "2026-01-01T00:00:00Z",
    ...over,
  };
}

/** GET /v1/stats/throughput's answer: two minutes of two types, and the queue wait of each minute. */
export function rawThroughput() {
  return {
    types: [
      { type: "email", points: [{ minute: "2026-01-01T00:00:00Z", completed: "5" }, { minute: "2026-01-01T00:01:00Z", completed: "7", failed: "1" }] },
      { type: "report", points: [{ minute: "2026-01-01T00:00:00Z", completed: "2", failed: "3" }, { minute: "2026-01-01T00:01:00Z" }] },
    ],
    queueWait: [
      { minute: "2026-01-01T00:00:00Z", p50Ms: 12, p99Ms: 250, count: "7" },
      { minute: "2026-01-01T00:01:00Z", p50Ms: 8, p99Ms: 90, count: "8" },
    ],
  };
}
