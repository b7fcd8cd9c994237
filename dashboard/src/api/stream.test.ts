import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeEventSource, asEventSource, rawStats } from "../test/fakes";
import { StatsStream, type StreamState } from "./stream";
import type { QueueStats } from "./types";

function setup(opts = {}) {
  const states: [StreamState, string | null][] = [];
  const stats: QueueStats[] = [];
  const stream = new StatsStream(
    { onStats: (s) => stats.push(s), onState: (st, err) => states.push([st, err]) },
    { EventSourceImpl: asEventSource, backoffMs: [100, 400], silenceMs: 5000, ...opts },
  );
  return { stream, states, stats };
}

describe("StatsStream", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    FakeEventSource.reset();
  });
  afterEach(() => vi.useRealTimers());

  it("opens /v1/stats:watch and goes live on the first snapshot", () => {
    const { stream, states, stats } = setup();
    stream.start();
    expect(FakeEventSource.last.url).toBe("/v1/stats:watch");
    FakeEventSource.last.emit(rawStats());
    FakeEventSource.last.emit({ result: rawStats({ pending: "13" }) });
    expect(stats.map((s) => s.pending)).toEqual([12, 13]);
    expect(states).toEqual([["live", null]]);
    stream.stop();
  });

  it("reconnects with backoff after the connection drops, and again after repeated failures", () => {
    const { stream, states } = setup();
    stream.start();
    const first = FakeEventSource.last;
    first.emit(rawStats());
    first.fail();
    expect(first.readyState).toBe(FakeEventSource.CLOSED);
    expect(states.at(-1)).toEqual(["reconnecting", "lost the connection to the gateway"]);
    vi.advanceTimersByTime(99);
    expect(FakeEventSource.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(FakeEventSource.instances).toHaveLength(2);
    // Fails again before any snapshot: the next wait is longer.
    FakeEventSource.last.fail();
    vi.advanceTimersByTime(399);
    expect(FakeEventSource.instances).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(FakeEventSource.instances).toHaveLength(3);
    FakeEventSource.last.emit(rawStats());
    expect(states.at(-1)).toEqual(["live", null]);
    stream.stop();
  });

  it("shows the gateway's in-band error event", () => {
    const { stream, states } = setup();
    stream.start();
    FakeEventSource.last.fail({ code: 14, message: "broker unavailable: connection refused" });
    expect(states.at(-1)).toEqual(["reconnecting", "broker unavailable: connection refused"]);
    stream.stop();
  });

  it("reopens a stream that goes silent", () => {
    const { stream, states } = setup();
    stream.start();
    FakeEventSource.last.emit(rawStats());
    vi.advanceTimersByTime(5000);
    expect(states.at(-1)).toEqual(["reconnecting", "no update for 5 s"]);
    vi.advanceTimersByTime(100);
    expect(FakeEventSource.instances).toHaveLength(2);
    stream.stop();
  });

  it("stops for good", () => {
    const { stream } = setup();
    stream.start();
    const es = FakeEventSource.last;
    stream.stop();
    expect(es.readyState).toBe(FakeEventSource.CLOSED);
    vi.advanceTimersByTime(60_000);
    expect(FakeEventSource.instances).toHaveLength(1);
  });

  it("ignores a frame that is not JSON without dropping the connection", () => {
    const { stream, stats } = setup();
    stream.start();
    FakeEventSource.last.emit("not json{");
    FakeEventSource.last.emit(rawStats());
    expect(stats).toHaveLength(1);
    expect(FakeEventSource.instances).toHaveLength(1);
    stream.stop();
  });
});
