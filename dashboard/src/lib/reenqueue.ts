// Commands that enqueue a copy of a job (same type, payload, priority and retries), for
// reproducing a failure from a shell: one for the REST API, one for the `forge` CLI.
import type { Job } from "../api/types";

/** `s` as one POSIX shell word: single-quoted, each ' written as '\''. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A curl call of POST /v1/jobs on `origin`; the token comes from $FORGE_TOKEN, never the page. */
export function curlCommand(job: Job, origin: string): string {
  const body = JSON.stringify({ type: job.type, payload: job.payload, priority: job.priority, maxRetries: job.maxRetries });
  return [
    `curl -X POST ${shellQuote(`${origin}/v1/jobs`)}`,
    `-H "Authorization: Bearer $FORGE_TOKEN"`,
    `-H 'Content-Type: application/json'`,
    `-d ${shellQuote(body)}`,
  ].join(" \\\n  ");
}

export function forgeCommand(job: Job): string {
  return `forge enqueue ${shellQuote(job.type)} ${shellQuote(JSON.stringify(job.payload))} --priority ${job.priority} --max-retries ${job.maxRetries}`;
}
