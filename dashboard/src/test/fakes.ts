// Test doubles for the browser's network edges: fetch (routed by "METHOD /path") and EventSource.
import { vi } from "vitest";

export type Handler = (req: { method: string; url: URL; body: unknown }) => { status?: number; body?: unknown } | Promise<{ status?: number; body?: unknown }>;

export interface FetchMock {
  calls: { method: string; path: string; body: unknown }[];
  fn: ReturnType<typeof vi.fn>;
}

/** Route fetch calls to handlers keyed "GET /v1/jobs" (path without query); unknown routes get 404. */
export function mockFetch(routes: Record<string, Handler>): FetchMock {
  const calls: FetchMock["calls"] = [];
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), "http://dash.test");
    const method = (init?.method ?? "GET").toUpperCase();
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    calls.push({ method, path: url.pathname + url.search, body });
    const handler = routes[`${method} ${url.pathname}`];
    const res = handler ? await handler({ method, url, body }) : { status: 404, body: { code: 5, message: `no route ${method} ${url.pathname}`, details: [] } };
    const status = res.status ?? 200;
    return new Response(res.body === undefined ? "" : JSON.stringify(res.body), {
      status,
      headers: { "content-type": "application/json" },
    });
  });
  vi.stubGlobal("fetch", fn);
  return { calls, fn };
}

/** An EventSource whose events the test fires by hand. */
export class FakeEventSource {
  static instances: FakeEventSource[] = [];
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  readonly url: string;
  readyState = 0;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onopen: ((ev: Event) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  private listeners: Record<string, ((ev: Event) => void)[]> = {};

  constructor(url: string) {
    this.url = url;
    FakeEventSource.instances.push(this);
  }

  static reset() {
    FakeEventSource.instances = [];
  }

  static get last(): FakeEventSource {
    return FakeEventSource.instances[FakeEventSource.instances.length - 1];
  }

  addEventListener(type: string, fn: (ev: Event) => void) {
    (this.listeners[type] ??= []).push(fn);
  }

  removeEventListener(type: string, fn: (ev: Event) => void) {
    this.listeners[type] = (this.listeners[type] ?? []).filter((f) => f !== fn);
  }

  close() {
    this.readyState = 2;
  }

  /** Deliver one `data:` event. */
  emit(data: unknown) {
    this.readyState = 1;
    this.onmessage?.(new MessageEvent("message", { data: typeof data === "string" ? data : JSON.stringify(data) }));
  }

  /** The connection failing (a bare Event), or the gateway's in-band `event: error` with data. */
  fail(data?: unknown) {
    const ev = data === undefined ? new Event("error") : new MessageEvent("error", { data: JSON.stringify(data) });
    this.onerror?.(ev);
    for (const fn of this.listeners.error ?? []) fn(ev);
  }
}

export const asEventSource = FakeEventSource as unknown as typeof EventSource;

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
