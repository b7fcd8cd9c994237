import { useLiveStats } from "../hooks/stats";

const LABEL = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…" } as const;

export function ConnectionIndicator() {
  const { state, error } = useLiveStats();
  return (
    <span
      className={`conn conn-${state}`}
      data-testid="connection"
      data-state={state}
      role="status"
      aria-live="polite"
      title={error ?? (state === "live" ? "Receiving live stats from /v1/stats:watch" : undefined)}
    >
      <span className="conn-dot" aria-hidden="true" />
      {LABEL[state]}
    </span>
  );
}
