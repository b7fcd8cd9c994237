-- Tracing: the W3C trace context a job was enqueued in (a JSON object of "traceparent" and
-- "tracestate"), so that each attempt's span on a worker is a child of the enqueue's span.
-- NULL for a job enqueued without tracing: adding a column with no default rewrites nothing
-- and takes its ACCESS EXCLUSIVE lock only for the catalog change.
ALTER TABLE forge.jobs ADD COLUMN trace_context jsonb;
