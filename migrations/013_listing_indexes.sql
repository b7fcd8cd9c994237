-- Indexes for ListJobs' orders and filters (and the bulk calls, which match as it lists), so a
-- page costs the same at any table size. What each order reads (queries.sql, list_jobs):
-- - NEWEST, OLDEST: the primary key, or jobs_by_status_idx (status, id) with a status
--   (migration 007); PROCESSING jobs through jobs_lease_idx, sorted (as many as are in flight).
-- - PRIORITY: PENDING jobs through jobs_claim_idx (priority DESC, run_at, id), the claim's own.
-- - RUN_AT and PRIORITY on the other statuses, and without a status (each status group read
--   through its index, merged: list_jobs_by_status_group): the indexes below.
--
-- Every entry costs the statement that writes it, so each index holds only the row versions it
-- serves. None holds PROCESSING rows, so claims write no entry in any of them; inserts write one
-- (jobs_pending_run_at_idx). The finished statuses' two indexes are the price of listing
-- finished jobs by run_at or priority: each ack writes an entry in both.
--
-- Built inside the migration's transaction (migrate.py runs each file in one, and CREATE INDEX
-- CONCURRENTLY cannot run in a transaction), so the build blocks writes to forge.jobs while it
-- scans the table: seconds per million rows. On a big queue build them beforehand, without
-- blocking, with these same definitions and CONCURRENTLY (docs/operations.md, Backup and
-- upgrade); IF NOT EXISTS then skips them here.

-- RUN_AT of PENDING jobs: what runs next, soonest first.
CREATE INDEX IF NOT EXISTS jobs_pending_run_at_idx ON forge.jobs (run_at, id)
  WHERE status = 'PENDING';

-- RUN_AT and PRIORITY of finished jobs (COMPLETED, DEAD, CANCELLED).
CREATE INDEX IF NOT EXISTS jobs_done_run_at_idx ON forge.jobs (run_at, id)
  WHERE status IN ('COMPLETED', 'DEAD', 'CANCELLED');
CREATE INDEX IF NOT EXISTS jobs_done_priority_idx ON forge.jobs (priority DESC, run_at, id)
  WHERE status IN ('COMPLETED', 'DEAD', 'CANCELLED');

-- The concurrency_key filter and the search by key, in every status. Keyed jobs only: a job
-- without a key writes no entry (jobs_pending_key_idx, migration 009, holds PENDING ones only).
CREATE INDEX IF NOT EXISTS jobs_key_idx ON forge.jobs (concurrency_key, id)
  WHERE concurrency_key IS NOT NULL;
