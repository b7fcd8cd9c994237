// Periods and schedule timings in words: a cron expression through cronstrue, a period as "30 s".
import { toString as cronToString } from "cronstrue";

const UNITS: [seconds: number, unit: string][] = [
  [86_400, "d"],
  [3_600, "h"],
  [60, "min"],
];

/** A period as "30 s", "5 min", "2 h", "1.5 s": the largest whole unit. */
export function formatPeriod(seconds: number): string {
  for (const [size, unit] of UNITS) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size} ${unit}`;
  }
  return `${Number(seconds.toFixed(6))} s`;
}

/** A period as "every 30 s", "every 5 min", ... */
export function formatEvery(seconds: number): string {
  return `every ${formatPeriod(seconds)}`;
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
