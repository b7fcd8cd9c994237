// The live QueueStats feed: GET /v1/stats:watch as Server-Sent Events.
//
// EventSource retries on its own only while the server keeps answering with an event stream;
// when the gateway is down or answers an error status (say 503 while the broker restarts) it
// gives up for good. So every failure closes the source and this class opens a new one after a
// backoff, and a watchdog reopens a stream that has gone silent.
import { type QueueStats, normalizeStats } from "./types";

export type StreamState = "connecting" | "live" | "reconnecting";

export interface StreamEvents {
  onStats(stats: QueueStats): void;
  onState(state: StreamState, error: string | null): void;
}

export interface StreamOptions {
  url?: string;
  /** Reopen when no snapshot came for this long (ms). */
  silenceMs?: number;
  /** Backoff steps between attempts (ms); the last one repeats. */
  backoffMs?: number[];
  EventSourceImpl?: typeof EventSource;
}

export class StatsStream {
  private readonly url: string;
  private readonly silenceMs: number;
  private readonly backoffMs: number[];
  private readonly ES: typeof EventSource;
  private source: EventSource | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private watchdog: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private stopped = true;
  private state: StreamState = "connecting";
  private lastError: string | null = null;
  private readonly events: StreamEvents;

  constructor(events: StreamEvents, opts: StreamOptions = {}) {
    this.events = events;
    this.url = opts.url ?? "/v1/stats:watch";
    this.silenceMs = opts.silenceMs ?? 15_000;
    this.backoffMs = opts.backoffMs ?? [500, 1000, 2000, 4000, 5000];
    this.ES = opts.EventSourceImpl ?? EventSource;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.closeSource();
  }

  private setState(state: StreamState, error: string | null): void {
    if (state === this.state && error === this.lastError) return;
    this.state = state;
    this.lastError = error;
    this.events.onState(state, error);
  }

  private open(): void {
    if (this.stopped) return;
    this.closeSource();
    const es = new this.ES(this.url);
    this.source = es;
    this.armWatchdog();
    es.onmessage = (ev: MessageEvent) => {
      if (this.source !== es) return;
      let stats: QueueStats;
      try {
        stats = normalizeStats(JSON.parse(String(ev.data)));
      } catch {
        this.setState(this.state, "the stats stream sent something that is not JSON");
        return;
      }
      this.failures = 0;
      this.armWatchdog();
      this.setState("live", null);
      this.events.onStats(stats);
    };
    es.addEventListener("error", (ev: Event) => {
      if (this.source !== es) return;
      // The gateway reports a failed stream in-band as `event: error` with {code, message}; a
      // bare Event is the connection itself failing.
      let message = "lost the connection to the gateway";
      const data = (ev as MessageEvent).data;
      if (typeof data === "string" && data) {
        try {
          const parsed = JSON.parse(data) as { message?: string; error?: { message?: string } };
          message = parsed.message ?? parsed.error?.message ?? data;
        } catch {
          message = data;
        }
      }
      this.fail(message);
    });
  }

  private fail(message: string): void {
    this.closeSource();
    this.clearTimers();
    this.setState("reconnecting", message);
    if (this.stopped) return;
    const delay = this.backoffMs[Math.min(this.failures, this.backoffMs.length - 1)];
    this.failures += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay);
  }

  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      this.watchdog = null;
      this.fail(`no update for ${Math.round(this.silenceMs / 1000)} s`);
    }, this.silenceMs);
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.watchdog) clearTimeout(this.watchdog);
    this.retryTimer = null;
    this.watchdog = null;
  }

  private closeSource(): void {
    if (this.source) {
      this.source.onmessage = null;
      this.source.close();
      this.source = null;
    }
  }
}
