import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { ThroughputPoint } from "../api/types";
import { formatMinute } from "../lib/format";

/** Completed and failed attempts per minute over the last hour, the current minute last. */
export function ThroughputChart({ points, height = 240 }: { points: ThroughputPoint[]; height?: number }) {
  const data = points.map((p) => ({ ...p, label: formatMinute(p.minute) }));
  const total = points.reduce((a, p) => a + p.completed + p.failed, 0);
  return (
    <div className="chart" data-testid="throughput-chart" aria-label={`Throughput over the last ${points.length} minutes: ${total} attempts`}>
      <ResponsiveContainer width="100%" height={height} minWidth={0} initialDimension={{ width: 600, height }}>
        <BarChart data={data} margin={{ top: 8, right: 8, bottom: 0, left: -16 }} barCategoryGap={1}>
          <CartesianGrid vertical={false} stroke="var(--grid)" />
          <XAxis dataKey="label" tick={{ fill: "var(--muted)", fontSize: 11 }} interval="preserveStartEnd" minTickGap={24} tickLine={false} axisLine={{ stroke: "var(--border)" }} />
          <YAxis allowDecimals={false} tick={{ fill: "var(--muted)", fontSize: 11 }} tickLine={false} axisLine={false} />
          <Tooltip
            cursor={{ fill: "var(--hover)" }}
            contentStyle={{ background: "var(--surface)", border: "1px solid var(--border)", borderRadius: 6, color: "var(--text)" }}
            labelStyle={{ color: "var(--text)" }}
          />
          <Legend wrapperStyle={{ fontSize: 12 }} />
          <Bar dataKey="completed" name="Completed" stackId="a" fill="var(--ok)" isAnimationActive={false} />
          <Bar dataKey="failed" name="Failed" stackId="a" fill="var(--bad)" isAnimationActive={false} />
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}
