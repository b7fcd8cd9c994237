-- jobs_status_idx held an entry for every version of every row, so each claim wrote one for
-- its PROCESSING version (beside the primary key's and jobs_lease_idx's): three index entries
-- per claimed row where two do. PROCESSING rows are already indexed by jobs_lease_idx, which
-- holds exactly them, so the status index now leaves them out:
-- - listing PROCESSING jobs (bounded by what is in flight) reads jobs_lease_idx and sorts by id;
-- - every other status listing, and retention's sweep, read this index as before.
-- Measured (claim then ack of 1,000 rows, 30,000 jobs, 120 interleaved pairs): 5-6 % less
-- time per job, 13 % less WAL (903 -> 789 bytes per job).
--
-- A table of many millions of rows blocks writers while the index builds. To avoid that, build
-- it first with the same definition, CONCURRENTLY (docs/operations.md, Backup and upgrade);
-- this migration then only drops the old one.
CREATE INDEX IF NOT EXISTS jobs_by_status_idx ON forge.jobs (status, id)
  WHERE status <> 'PROCESSING';
DROP INDEX IF EXISTS forge.jobs_status_idx;
