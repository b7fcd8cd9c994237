import { describe, expect, it } from "vitest";
import { describeCron, describeTiming, formatEvery, formatPeriod } from "./timing";

describe("timing", () => {
  it("says a period in its largest whole unit", () => {
    expect(formatEvery(30)).toBe("every 30 s");
    expect(formatEvery(1)).toBe("every 1 s");
    expect(formatEvery(90)).toBe("every 90 s");
    expect(formatEvery(300)).toBe("every 5 min");
    expect(formatEvery(7200)).toBe("every 2 h");
    expect(formatEvery(2 * 86_400)).toBe("every 2 d");
    expect(formatEvery(1.5)).toBe("every 1.5 s");
    expect(formatPeriod(60)).toBe("1 min");
    expect(formatPeriod(0.5)).toBe("0.5 s");
  });

  it("puts cron expressions and their shorthands into words", () => {
    expect(describeCron("0 3 * * *")).toBe("At 03:00");
    expect(describeCron("*/5 * * * *")).toBe("Every 5 minutes");
    expect(describeCron("0 9 * * MON-FRI")).toBe("At 09:00, Monday through Friday");
    expect(describeCron("@hourly")).toBe("Every hour");
    expect(describeCron("0 0 * * MON#2")).toBe("At 00:00, on the second Monday of the month");
  });

  it("shows an expression it cannot read as it is", () => {
    expect(describeCron("not a cron")).toBe("not a cron");
  });

  it("describes whichever of cron and every a schedule has", () => {
    expect(describeTiming({ cron: "", everySeconds: 30 })).toBe("every 30 s");
    expect(describeTiming({ cron: "@daily", everySeconds: null })).toBe("At 00:00");
  });
});
