import type { ReactNode } from "react";
import { Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { ThroughputReport } from "../api/types";
import { formatMinute, formatMs } from "../lib/format";

// One colour per type, in order; readable on the light and the dark theme.
const PALETTE = ["#4f46e5", "#0891b2", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#65a30d", "#0284c7", "#ea580c", "#64748b"];
const OTHERS = "other types";
// Past this many types the smallest are summed into one band, so the legend stays readable.
const MAX_BANDS = PALETTE.length - 1;

const axis = { tick: { fill: "var(--muted)", fontSize: 11 }, tickLine: false } as const;
const tooltip = {
  contentStyle: { background: "var(--surface)", border: "1px solid var(--border)", borderRadius: 6, color: "var(--text)" },
  labelStyle: { color: "var(--text)" },
} as const;

function Frame({ testId, label, total, height, children }: { testId: string; label: string; total: number; height: number; children: ReactNode }) {
  return (
    <div className="chart" data-testid={testId} data-total={total} aria-label={label}>
      <ResponsiveContainer width="100%" height={height} minWidth={0} initialDimension={{ width: 600, height }}>
        {children}
      </ResponsiveContainer>
    </div>
  );
}

/** Each minute's counts of `field` per type ({label, email: 3, report: 1}), the busiest types
 * first and the rest summed as "other types". */
export function stackByType(report: ThroughputReport, field: "completed" | "failed"): { bands: string[]; rows: Record<string, string | number>[]; total: number } {
  const totals = report.types
    .map((t) => ({ type: t.type, n: t.points.reduce((a, p) => a + p[field], 0) }))
    .filter((t) => t.n > 0)
    .sort((a, b) => b.n - a.n || a.type.localeCompare(b.type));
  const kept = new Set(totals.slice(0, MAX_BANDS).map((t) => t.type));
  const bands = [...kept, ...(totals.length > MAX_BANDS ? [OTHERS] : [])];
  const rows = new Map<string, Record<string, string | number>>();
  for (const t of report.types) {
    for (const p of t.points) {
      const row = rows.get(p.minute) ?? { label: formatMinute(p.minute) };
      const band = kept.has(t.type) ? t.type : OTHERS;
      if (bands.includes(band)) row[band] = Number(row[band] ?? 0) + p[field];
      rows.set(p.minute, row);
    }
  }
  const ordered = [...rows.entries()].sort(([a], [b]) => Date.parse(a) - Date.parse(b)).map(([, r]) => r);
  return { bands, rows: ordered, total: totals.reduce((a, t) => a + t.n, 0) };
}

/** Completed (or failed) attempts per minute, stacked by type. */
export function StackedByTypeChart({ report, field, testId, height = 220 }: { report: ThroughputReport; field: "completed" | "failed"; testId: string; height?: number }) {
  const { bands, rows, total } = stackByType(report, field);
  return (
    <Frame testId={testId} total={total} height={height} label={`${total} ${field} attempts over the last ${rows.length} minutes`}>
      <BarChart data={rows} margin={{ top: 8, right: 8, bottom: 0, left: -16 }} barCategoryGap={1}>
        <CartesianGrid vertical={false} stroke="var(--grid)" />
        <XAxis dataKey="label" {...axis} interval="preserveStartEnd" minTickGap={24} axisLine={{ stroke: "var(--border)" }} />
        <YAxis allowDecimals={false} {...axis} axisLine={false} />
        <Tooltip cursor={{ fill: "var(--hover)" }} {...tooltip} />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        {bands.map((b, i) => (
          <Bar key={b} dataKey={b} name={b} stackId="a" fill={field === "failed" && bands.length === 1 ? "var(--bad)" : PALETTE[i % PALETTE.length]} isAnimationActive={false} />
        ))}
      </BarChart>
    </Frame>
  );
}

/** Queue wait p50 and p99 per minute (of the jobs leased in that minute). */
export function QueueWaitChart({ report, height = 220 }: { report: ThroughputReport; height?: number }) {
  const rows = report.queueWait.map((p) => ({ label: formatMinute(p.minute), p50: p.p50Ms, p99: p.p99Ms, count: p.count }));
  const leased = report.queueWait.reduce((a, p) => a + p.count, 0);
  return (
    <Frame testId="chart-queue-wait" total={leased} height={height} label={`Queue wait p50 and p99 over the last ${rows.length} minutes, ${leased} jobs leased`}>
      <LineChart data={rows} margin={{ top: 8, right: 8, bottom: 0, left: 0 }}>
        <CartesianGrid vertical={false} stroke="var(--grid)" />
        <XAxis dataKey="label" {...axis} interval="preserveStartEnd" minTickGap={24} axisLine={{ stroke: "var(--border)" }} />
        <YAxis {...axis} axisLine={false} tickFormatter={(v: number) => formatMs(v)} width={64} />
        <Tooltip {...tooltip} formatter={(v) => formatMs(Number(v))} />
        <Legend wrapperStyle={{ fontSize: 12 }} />
        <Line type="monotone" dataKey="p50" name="p50" stroke="var(--info)" dot={false} isAnimationActive={false} />
        <Line type="monotone" dataKey="p99" name="p99" stroke="var(--warn)" dot={false} isAnimationActive={false} />
      </LineChart>
    </Frame>
  );
}
