// The live QueueStats feed: GET /v1/stats:watch as Server-Sent Events, read with fetch.
//
// Not EventSource: it cannot send the Authorization header, and it gives up for good when the
// gateway is down or answers an error status (say 503 while the broker restarts). Here every
// failure (connection refused or dropped, an HTTP error status, the gateway's in-band
// `event: error`, a stream that ends, or silence past the watchdog) aborts the request and
// opens a new one after a backoff. A 401 does not retry: it hands over to the sign-in view
// (auth.unauthorized), and the provider starts a new stream once there is a new token.
import { auth, authHeaders } from "./auth";
import { readEvents, type SseEvent } from "./sse";
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
  /** The fetch to use (default: the global one, looked up at each connection). */
  fetchImpl?: typeof fetch;
}

const UNAUTHENTICATED = 16;

/** The message of an error answer's JSON body ({code, message, details}), or the status line. */
async function errorText(resp: Response): Promise<string> {
  let text = "";
  try {
    text = await resp.text();
  } catch {
    // the body failed too: the status line will do
  }
  try {
    const d = JSON.parse(text) as { message?: unknown };
    if (typeof d.message === "string" && d.message) return d.message;
  } catch {
    // not JSON
  }
  return `HTTP ${resp.status}${resp.statusText ? ` ${resp.statusText}` : ""}`;
}

export class StatsStream {
  private readonly url: string;
  private readonly silenceMs: number;
  private readonly backoffMs: number[];
  private readonly fetchImpl: (() => typeof fetch) | null;
  /** The current connection's controller; a connection that is no longer it stays quiet. */
  private ctrl: AbortController | null = null;
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
    const f = opts.fetchImpl;
    this.fetchImpl = f ? () => f : null;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.open();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.abort();
  }

  private setState(state: StreamState, error: string | null): void {
    if (state === this.state && error === this.lastError) return;
    this.state = state;
    this.lastError = error;
    this.events.onState(state, error);
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    this.abort();
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const current = () => this.ctrl === ctrl && !this.stopped;
    const token = auth.token();
    this.armWatchdog();
    const doFetch = this.fetchImpl ? this.fetchImpl() : fetch;
    let resp: Response;
    try {
      resp = await doFetch(this.url, {
        headers: { Accept: "text/event-stream", ...authHeaders(token) },
        cache: "no-store",
        signal: ctrl.signal,
      });
    } catch {
      if (current()) this.fail("lost the connection to the gateway");
      return;
    }
    if (!current()) return;
    if (resp.status === 401) {
      const message = await errorText(resp);
      if (current()) this.unauthorized(message, token);
      return;
    }
    if (!resp.ok || !resp.body) {
      const message = resp.ok ? "the gateway sent an empty stream" : await errorText(resp);
      if (current()) this.fail(message);
      return;
    }
    try {
      await readEvents(resp.body, (ev) => {
        if (!current()) return false;
        this.dispatch(ev, token);
        return current();
      });
      if (current()) this.fail("the gateway ended the stream");
    } catch {
      if (current()) this.fail("lost the connection to the gateway");
    }
  }

  private dispatch(ev: SseEvent, token: string | null): void {
    if (ev.type === "error") {
      // The call failed after the headers went out: {code, message, details} in-band.
      let message = ev.data || "the stream failed";
      let code: number | null = null;
      try {
        const parsed = JSON.parse(ev.data) as { code?: unknown; message?: unknown; error?: { message?: unknown } };
        if (typeof parsed.code === "number") code = parsed.code;
        const m = parsed.message ?? parsed.error?.message;
        if (typeof m === "string" && m) message = m;
      } catch {
        // not JSON: show it as it came
      }
      if (code === UNAUTHENTICATED) this.unauthorized(message, token);
      else this.fail(message);
      return;
    }
    if (ev.type !== "message") return;
    let stats: QueueStats;
    try {
      stats = normalizeStats(JSON.parse(ev.data));
    } catch {
      this.setState(this.state, "the stats stream sent something that is not JSON");
      return;
    }
    this.failures = 0;
    this.armWatchdog();
    this.setState("live", null);
    this.events.onStats(stats);
  }

  /** The token was refused: no retrying with it; sign-in takes over. */
  private unauthorized(message: string, token: string | null): void {
    this.abort();
    this.clearTimers();
    this.setState("reconnecting", `sign-in required: ${message}`);
    auth.unauthorized(message, token);
  }

  private fail(message: string): void {
    this.abort();
    this.clearTimers();
    this.setState("reconnecting", message);
    if (this.stopped) return;
    const delay = this.backoffMs[Math.min(this.failures, this.backoffMs.length - 1)];
    this.failures += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.open();
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

  private abort(): void {
    if (this.ctrl) {
      const c = this.ctrl;
      this.ctrl = null;
      c.abort();
    }
  }
}
