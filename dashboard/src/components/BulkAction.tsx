import { useState } from "react";
import { errorMessage } from "../api/client";
import { formatCount } from "../lib/format";

type Step =
  | { at: "idle" }
  | { at: "counting" }
  | { at: "asking"; count: number }
  | { at: "running"; count: number }
  | { at: "done"; count: number }
  | { at: "failed"; message: string };

/** "1 job" / "1,234 jobs", or with a word before it: "1,234 dead jobs". */
export function jobsWord(n: number, adjective = ""): string {
  const what = adjective ? `${adjective} job` : "job";
  return n === 1 ? `1 ${what}` : `${formatCount(n)} ${what}s`;
}

/**
 * An action on every job a filter matches, on all pages: the button first asks the API how many
 * it would change (a dry run), the question states that count, and once confirmed the outcome
 * states how many it did change (more or fewer, if jobs moved meanwhile). Mount it with a `key`
 * of its filter, so a changed filter asks afresh.
 */
export function BulkAction({ label, question, done, run, onDone, danger = false, testId }: {
  label: string;
  /** The confirmation for `n` matching jobs ("Retry 120 dead jobs of type email?"). */
  question: (n: number) => string;
  /** What happened to `n` ("120 jobs sent back to PENDING."). */
  done: (n: number) => string;
  run: (dryRun: boolean) => Promise<number>;
  onDone?: () => void;
  danger?: boolean;
  testId: string;
}) {
  const [step, setStep] = useState<Step>({ at: "idle" });

  async function attempt(dryRun: boolean, count = 0) {
    setStep(dryRun ? { at: "counting" } : { at: "running", count });
    try {
      const n = await run(dryRun);
      setStep(dryRun ? { at: "asking", count: n } : { at: "done", count: n });
      if (!dryRun) onDone?.();
    } catch (e) {
      setStep({ at: "failed", message: errorMessage(e) });
    }
  }

  const button = (
    <button
      type="button"
      className={`btn btn-small ${danger ? "btn-danger" : "btn-primary"}`}
      disabled={step.at === "counting" || step.at === "running"}
      onClick={() => void attempt(true)}
      data-testid={testId}
    >
      {step.at === "counting" ? "Counting…" : step.at === "running" ? "Working…" : label}
    </button>
  );
  if (step.at !== "asking") {
    return (
      <span className="bulk-action">
        {button}
        {step.at === "done" && (
          <span className="bulk-outcome text-ok" role="status" data-testid={`${testId}-outcome`} data-count={step.count}>
            {done(step.count)}
          </span>
        )}
        {step.at === "failed" && (
          <span className="row-error" role="alert" data-testid={`${testId}-error`}>
            {step.message}
          </span>
        )}
      </span>
    );
  }
  if (step.count === 0) {
    return (
      <span className="confirm-inline" role="group" data-testid={`${testId}-question`} data-count={0}>
        <span>No job matches: nothing to do.</span>
        <button type="button" className="btn btn-small" onClick={() => setStep({ at: "idle" })} data-testid={`${testId}-no`}>
          OK
        </button>
      </span>
    );
  }
  return (
    <span className="confirm-inline" role="group" aria-label={question(step.count)} data-testid={`${testId}-question`} data-count={step.count}>
      <span>{question(step.count)}</span>
      <button type="button" className={`btn btn-small ${danger ? "btn-danger" : "btn-primary"}`} onClick={() => void attempt(false, step.count)} data-testid={`${testId}-yes`}>
        Yes, {jobsWord(step.count)}
      </button>
      <button type="button" className="btn btn-small" onClick={() => setStep({ at: "idle" })} data-testid={`${testId}-no`}>
        No
      </button>
    </span>
  );
}
