import { formatRelative, formatTime } from "../lib/format";

/** "5s ago" / "in 3m 00s", with the absolute time on hover. */
export function RelativeTime({ iso, now, empty = "—" }: { iso: string | null; now: number; empty?: string }) {
  if (!iso) return <span className="muted">{empty}</span>;
  return (
    <time dateTime={iso} title={formatTime(iso)}>
      {formatRelative(iso, now)}
    </time>
  );
}
