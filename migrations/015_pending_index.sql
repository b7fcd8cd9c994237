-- One index for the PENDING set where there were two. jobs_claim_idx held pending jobs in claim
-- order (priority DESC, run_at, id) and jobs_pending_type_idx the same jobs again per type
-- (type, run_at), for Stats' per-type figures and the claims of limited types: every enqueued
-- job wrote an entry in both. jobs_pending_idx holds them once, per type in claim order, and
-- serves what both did (queries.sql says how for each statement):
-- - a claim of some types walks each type's jobs in order and takes the best of those first
--   few per type; a claim of any type finds the types with pending jobs the same way (one
--   index descent per type);
-- - a limited type's claim, and Stats' oldest, next and scheduled figures, walk one type, one
--   priority at a time (a queue has few distinct priorities);
-- - listings of pending jobs in PRIORITY and RUN_AT order merge the types' walks.
-- Measured: a COPY of 1,000 pending jobs costs PostgreSQL some 20 percent less per row.
--
-- Built inside the migration's transaction, so the build blocks writes to forge.jobs while it
-- scans the table: seconds per million pending rows. On a big queue build it beforehand,
-- without blocking, with this same definition and CONCURRENTLY (docs/operations.md, Backup and
-- upgrade); IF NOT EXISTS then skips it here.
CREATE INDEX IF NOT EXISTS jobs_pending_idx ON forge.jobs (type, priority DESC, run_at, id)
  WHERE status = 'PENDING';
DROP INDEX IF EXISTS forge.jobs_claim_idx;
DROP INDEX IF EXISTS forge.jobs_pending_type_idx;
