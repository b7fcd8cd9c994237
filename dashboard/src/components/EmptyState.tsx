import type { ReactNode } from "react";

/** What a list shows when it has nothing, with the command that makes something, if any. */
export function EmptyState({ children, command, testId }: { children: ReactNode; command?: string; testId?: string }) {
  return (
    <div className="empty" data-testid={testId}>
      <p>{children}</p>
      {command && <pre className="command">{command}</pre>}
    </div>
  );
}
