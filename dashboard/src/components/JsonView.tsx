export function JsonView({ value, empty = "—", testId }: { value: unknown; empty?: string; testId?: string }) {
  if (value === null || value === undefined) return <span className="muted" data-testid={testId}>{empty}</span>;
  return (
    <pre className="json" data-testid={testId}>
      {JSON.stringify(value, null, 2)}
    </pre>
  );
}
