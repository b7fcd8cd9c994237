import type { ReactNode } from "react";

export type Tone = "ok" | "warn" | "bad" | "info" | "neutral";

/** A state in a word (Active, Paused, ...) in the colour of its tone. */
export function Badge({ tone = "neutral", children, testId }: { tone?: Tone; children: ReactNode; testId?: string }) {
  return (
    <span className={`badge badge-tone-${tone}`} data-testid={testId}>
      {children}
    </span>
  );
}
