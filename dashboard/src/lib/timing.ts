// A schedule's timing in words: a cron expression through cronstrue, a fixed period as "every 30 s".
import { toString as cronToString } from "cronstrue";

const UNITS: [seconds: number, unit: string][] = [
  [86_400, "d"],
  [3_600, "h"],
  [60, "min"],
];

/** A period as "every 30 s", "every 5 min", "every 2 h", "every 1.5 s": the largest whole unit. */
export function formatEvery(seconds: number): string {
  for (const [size, unit] of UNITS) {
    if (seconds >= size && seconds % size === 0) return `every ${seconds / size} ${unit}`;
  }
  return `every ${Number(seconds.toFixed(6))} s`;
}

/** "0 3 * * *" as "At 03:00"; the expression itself when cronstrue cannot read it. */
export function describeCron(expression: string): string {
  try {
    return cronToString(expression, { use24HourTimeFormat: true, throwExceptionOnParseError: true });
  } catch {
    return expression;
  }
}

/** A schedule's timing in words, whichever of cron and every it has. */
export function describeTiming(s: { cron: string; everySeconds: number | null }): string {
  if (s.everySeconds !== null) return formatEvery(s.everySeconds);
  return s.cron ? describeCron(s.cron) : "—";
}
