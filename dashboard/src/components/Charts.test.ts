import { describe, expect, it } from "vitest";
import { normalizeThroughput } from "../api/types";
import { rawThroughput } from "../test/fakes";
import { stackByType } from "./Charts";

describe("stackByType", () => {
  it("gives a row per minute, oldest first, with each type's count, the busiest type first", () => {
    const { bands, rows, total } = stackByType(normalizeThroughput(rawThroughput()), "failed");
    expect(bands).toEqual(["report", "email"]);
    expect(total).toBe(4);
    expect(rows.map((r) => [r.report, r.email])).toEqual([[3, 0], [0, 1]]);
  });

  it("sums the types past the palette into one band, and leaves types without any out", () => {
    const types = Array.from({ length: 12 }, (_, i) => ({ type: `t${String(i).padStart(2, "0")}`, points: [{ minute: "2026-01-01T00:00:00Z", completed: String(i) }] }));
    const { bands, rows, total } = stackByType(normalizeThroughput({ types }), "completed");
    expect(bands).toHaveLength(10);
    expect(bands.at(-1)).toBe("other types");
    expect(bands).not.toContain("t00");
    expect(rows[0]["other types"]).toBe(1 + 2);
    expect(total).toBe(66);
  });
});
