import { describe, expect, it } from "vitest";
import { formatDuration, formatMs, formatRelative, localInputToIso } from "./format";

describe("format", () => {
  it("formats durations compactly", () => {
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(4.54)).toBe("4.5s");
    expect(formatDuration(42)).toBe("42s");
    expect(formatDuration(185)).toBe("3m 05s");
    expect(formatDuration(7800)).toBe("2h 10m");
    expect(formatDuration(3 * 86400 + 4 * 3600)).toBe("3d 4h");
  });

  it("formats milliseconds", () => {
    expect(formatMs(0)).toBe("0 ms");
    expect(formatMs(12.4)).toBe("12 ms");
    expect(formatMs(1234)).toBe("1.23 s");
    expect(formatMs(25_000)).toBe("25.0 s");
  });

  it("formats relative times both ways", () => {
    const now = Date.parse("2026-01-01T00:01:00Z");
    expect(formatRelative("2026-01-01T00:00:30Z", now)).toBe("30s ago");
    expect(formatRelative("2026-01-01T00:04:00Z", now)).toBe("in 3m 00s");
    expect(formatRelative("2026-01-01T00:00:59.600Z", now)).toBe("just now");
    expect(formatRelative("2026-01-01T00:01:00.400Z", now)).toBe("in a moment");
    expect(formatRelative(null, now)).toBe("—");
  });

  it("turns datetime-local values into UTC RFC 3339", () => {
    const iso = localInputToIso("2030-05-06T07:08:09");
    expect(iso).toBe(new Date("2030-05-06T07:08:09").toISOString());
    expect(localInputToIso("")).toBe(null);
  });
});
