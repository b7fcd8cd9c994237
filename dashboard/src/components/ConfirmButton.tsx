import { useState } from "react";

/**
 * An action that is hard to undo, asked twice: the button, then in its place the question with
 * a confirming and a cancelling button.
 */
export function ConfirmButton({ label, question, confirmLabel, cancelLabel = "Keep it", busy = false, busyLabel, disabled = false, title, onConfirm, testId }: {
  label: string;
  question: string;
  confirmLabel: string;
  cancelLabel?: string;
  busy?: boolean;
  busyLabel?: string;
  disabled?: boolean;
  title?: string;
  onConfirm: () => void;
  testId: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button type="button" className="btn btn-small btn-danger" disabled={disabled || busy} title={title} onClick={() => setAsking(true)} data-testid={testId}>
        {busy && busyLabel ? busyLabel : label}
      </button>
    );
  }
  return (
    <span className="confirm-inline" role="group" aria-label={question}>
      <span>{question}</span>
      <button
        type="button"
        className="btn btn-small btn-danger"
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
        data-testid={`${testId}-yes`}
      >
        {confirmLabel}
      </button>
      <button type="button" className="btn btn-small" onClick={() => setAsking(false)} data-testid={`${testId}-no`}>
        {cancelLabel}
      </button>
    </span>
  );
}
