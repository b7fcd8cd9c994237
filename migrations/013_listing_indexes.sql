-- Indexes for ListJobs' orders and filters (and the bulk calls, which match as it lists), so a
-- page costs the same at any table size. What each order reads (queries.sql, list_jobs):
-- - NEWEST, OLDEST: the primary key, or jobs_by_status_idx (status, id) with a status
--   (migration 007); PROCESSING jobs through jobs_lease_idx, sorted (as many as are in flight).
-- - PRIORITY: PENDING jobs through jobs_claim_idx (priority DESC, run_at, id), the claim's own;
--   DEAD and CANCELLED jobs through jobs_done_priority_idx below, the same key.
-- - RUN_AT: the same two indexes, one priority at a time (list_jobs_by_run_at).
-- - RUN_AT and PRIORITY list one status other than COMPLETED: the broker refuses the rest.
-- - run_after (with status PENDING, the scheduled jobs): a range of run_at in jobs_claim_idx.
--
-- Every entry costs the statement that writes it, so each index holds only the row versions it
-- serves, and the orders share what they can: no index here holds PROCESSING or PENDING rows,
-- so claims and enqueues write no entry in them. An index in run_at order would have cost
-- every enqueue (PENDING) or every ack (finished) one more entry: RUN_AT walks the PRIORITY
-- indexes instead. jobs_done_priority_idx leaves COMPLETED jobs out, so an ack writes no entry
-- in it. Measured on 30,000-job claim-and-ack drains (1,000 a statement) with COMPLETED in it:
-- WAL per job 900 -> 995 bytes (an index per order would cost twice that), database CPU per
-- job 37 -> 42 us (medians of 15 noisy runs): with the broker's and workerd's share, some 5 %
-- of a drain's CPU, for listing COMPLETED jobs in RUN_AT or PRIORITY order, which the
-- dashboard does not need (NEWEST and OLDEST list them through jobs_by_status_idx).
--
-- Built inside the migration's transaction (migrate.py runs each file in one, and CREATE INDEX
-- CONCURRENTLY cannot run in a transaction), so the build blocks writes to forge.jobs while it
-- scans the table: seconds per million rows. On a big queue build them beforehand, without
-- blocking, with these same definitions and CONCURRENTLY (docs/operations.md, Backup and
-- upgrade); IF NOT EXISTS then skips them here.

-- RUN_AT and PRIORITY of DEAD and CANCELLED jobs (few: nothing is written here per ack).
CREATE INDEX IF NOT EXISTS jobs_done_priority_idx ON forge.jobs (priority DESC, run_at, id)
  WHERE status IN ('DEAD', 'CANCELLED');

-- The concurrency_key filter and the search by key, in every status. Keyed jobs only: a job
-- without a key writes no entry (jobs_pending_key_idx, migration 009, holds PENDING ones only).
CREATE INDEX IF NOT EXISTS jobs_key_idx ON forge.jobs (concurrency_key, id)
  WHERE concurrency_key IS NOT NULL;
