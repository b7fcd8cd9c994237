import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeFeed, rawStats } from "../test/fakes";
import { auth } from "./auth";
import { StatsStream, type StreamState } from "./stream";
import type { QueueStats } from "./types";

function setup(opts = {}) {
  const states: [StreamState, string | null][] = [];
  const stats: QueueStats[] = [];
  const stream = new StatsStream(
    { onStats: (s) => stats.push(s), onState: (st, err) => states.push([st, err]) },
    { fetchImpl: FakeFeed.fetch, backoffMs: [100, 400], silenceMs: 5000, ...opts },
  );
  return { stream, states, stats };
}

/** Let the promise jobs run (a fetch answer, a body read) without moving the fake clock. */
async function settle() {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

describe("StatsStream", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeFeed.reset();
  });
  afterEach(() => vi.useRealTimers());

  it("opens /v1/stats:watch as an event stream and goes live on the first snapshot", async () => {
    const { stream, states, stats } = setup();
    stream.start();
    expect(FakeFeed.last.url).toBe("/v1/stats:watch");
    expect(FakeFeed.last.headers.get("accept")).toBe("text/event-stream");
    expect(FakeFeed.last.headers.has("authorization")).toBe(false);
    await FakeFeed.last.emit(rawStats());
    await FakeFeed.last.emit({ result: rawStats({ pending: "13" }) });
    expect(stats.map((s) => s.pending)).toEqual([12, 13]);
    expect(states).toEqual([["live", null]]);
    stream.stop();
  });

  it("sends the token as a bearer Authorization header", async () => {
    auth.signIn("s3cret-token");
    const { stream, stats } = setup();
    stream.start();
    expect(FakeFeed.last.headers.get("authorization")).toBe("Bearer s3cret-token");
    await FakeFeed.last.emit(rawStats());
    expect(stats).toHaveLength(1);
    stream.stop();
  });

  it("reads events split across chunks at any byte, CRLF and comments included", async () => {
    const { stream, stats, states } = setup();
    stream.start();
    const feed = FakeFeed.last;
    const frame = `: keep-alive\r\ndata: ${JSON.stringify(rawStats({ pending: "7", types: [{ type: "émail✓" }] }))}\r\n\r\n`;
    const bytes = new TextEncoder().encode(frame + frame.replace('"7"', '"8"'));
    // Every byte on its own: splits inside "data:", inside CRLF and inside multi-byte characters.
    for (const b of bytes) await feed.send(Uint8Array.of(b));
    expect(stats.map((s) => s.pending)).toEqual([7, 8]);
    expect(stats[0].types[0].type).toBe("émail✓");
    expect(states).toEqual([["live", null]]);
    stream.stop();
  });

  it("reconnects with backoff after the connection drops, and again after repeated failures", async () => {
    const { stream, states } = setup();
    stream.start();
    const first = FakeFeed.last;
    await first.emit(rawStats());
    await first.fail();
    expect(first.isAborted).toBe(true);
    expect(states.at(-1)).toEqual(["reconnecting", "lost the connection to the gateway"]);
    vi.advanceTimersByTime(99);
    expect(FakeFeed.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(FakeFeed.instances).toHaveLength(2);
    // Fails again before any snapshot: the next wait is longer.
    await FakeFeed.last.fail();
    vi.advanceTimersByTime(399);
    expect(FakeFeed.instances).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(FakeFeed.instances).toHaveLength(3);
    await FakeFeed.last.emit(rawStats());
    expect(states.at(-1)).toEqual(["live", null]);
    stream.stop();
  });

  it("retries an HTTP error answer (the broker restarting) and shows its message", async () => {
    FakeFeed.answers.push({ status: 503, body: { code: 14, message: "broker unavailable: connection refused", details: [] } });
    const { stream, states } = setup();
    stream.start();
    await FakeFeed.last.closed();
    expect(states.at(-1)).toEqual(["reconnecting", "broker unavailable: connection refused"]);
    vi.advanceTimersByTime(100);
    expect(FakeFeed.instances).toHaveLength(2);
    await FakeFeed.last.emit(rawStats());
    expect(states.at(-1)).toEqual(["live", null]);
    stream.stop();
  });

  it("reconnects when the gateway ends the stream", async () => {
    const { stream, states } = setup();
    stream.start();
    await FakeFeed.last.emit(rawStats());
    await FakeFeed.last.end();
    expect(states.at(-1)).toEqual(["reconnecting", "the gateway ended the stream"]);
    vi.advanceTimersByTime(100);
    expect(FakeFeed.instances).toHaveLength(2);
    stream.stop();
  });

  it("shows the gateway's in-band error event", async () => {
    const { stream, states } = setup();
    stream.start();
    await FakeFeed.last.fail({ code: 14, message: "broker unavailable: connection refused" });
    expect(states.at(-1)).toEqual(["reconnecting", "broker unavailable: connection refused"]);
    stream.stop();
  });

  it("hands a 401 to sign-in and does not retry with the refused token", async () => {
    auth.signIn("old-token");
    FakeFeed.answers.push({ status: 401, body: { code: 16, message: "invalid token", details: [] } });
    const { stream, states } = setup();
    stream.start();
    await FakeFeed.last.closed();
    expect(states.at(-1)).toEqual(["reconnecting", "sign-in required: invalid token"]);
    expect(auth.get()).toEqual({ token: null, required: true, reason: "invalid token" });
    vi.advanceTimersByTime(60_000);
    expect(FakeFeed.instances).toHaveLength(1);
    stream.stop();
  });

  it("treats an in-band UNAUTHENTICATED like a 401", async () => {
    const { stream } = setup();
    stream.start();
    await FakeFeed.last.fail({ code: 16, message: "token revoked" });
    expect(auth.get().required).toBe(true);
    vi.advanceTimersByTime(60_000);
    expect(FakeFeed.instances).toHaveLength(1);
    stream.stop();
  });

  it("reopens a stream that goes silent", async () => {
    const { stream, states } = setup();
    stream.start();
    await FakeFeed.last.emit(rawStats());
    vi.advanceTimersByTime(5000);
    expect(states.at(-1)).toEqual(["reconnecting", "no update for 5 s"]);
    expect(FakeFeed.instances[0].isAborted).toBe(true);
    vi.advanceTimersByTime(100);
    expect(FakeFeed.instances).toHaveLength(2);
    stream.stop();
  });

  it("stops for good, aborting the request", async () => {
    const { stream, states } = setup();
    stream.start();
    const feed = FakeFeed.last;
    await feed.emit(rawStats());
    stream.stop();
    expect(feed.isAborted).toBe(true);
    await settle();
    vi.advanceTimersByTime(60_000);
    expect(FakeFeed.instances).toHaveLength(1);
    expect(states).toEqual([["live", null]]);
  });

  it("aborts a request that has not been answered yet", async () => {
    const { stream, states } = setup();
    stream.start();
    const feed = FakeFeed.last;
    stream.stop();
    expect(feed.isAborted).toBe(true);
    await settle();
    vi.advanceTimersByTime(60_000);
    expect(FakeFeed.instances).toHaveLength(1);
    expect(states).toEqual([]);
  });

  it("ignores a frame that is not JSON without dropping the connection", async () => {
    const { stream, stats } = setup();
    stream.start();
    await FakeFeed.last.emit("not json{");
    await FakeFeed.last.emit(rawStats());
    expect(stats).toHaveLength(1);
    expect(FakeFeed.instances).toHaveLength(1);
    stream.stop();
  });
});
