-- Attempt history: every failed attempt of a job, and when its current or last attempt ended.
--
-- Both are written by the statements that already change the row (nack_jobs,
-- rescue_expired_leases, the cancels: see queries.sql), so they cost no round trip of their
-- own. Nullable without a default: adding them rewrites nothing, and a job that never fails
-- stores nothing in either. Claims and acks, the statements of every drain, write neither: an
-- acked attempt ended at the ack, which is the job's updated_at for good (COMPLETED never
-- changes again), and a running one has not ended, whatever finished_at still holds from the
-- attempt before. Job.finished_at is read accordingly (forge_broker.convert).
ALTER TABLE forge.jobs
  -- One object per failed attempt, oldest first:
  -- {"attempt", "at", "error", "worker_id", "started_at"} (Job.errors, AttemptError).
  ADD COLUMN errors jsonb,
  -- When the last attempt that ended other than by an ack ended: a nack, a lease expiry, a
  -- cancel while it ran. Its start was leased_at, then.
  ADD COLUMN finished_at timestamptz;

-- The attempt history with one more failed attempt at its end: the job's attempt number, the
-- failure's time (the statement's), its error, the worker that held the lease and when it was
-- leased. The one place an entry is made, by nack_jobs and rescue_expired_leases.
CREATE FUNCTION forge.attempt_error(errors jsonb, attempt integer, error text, worker_id text,
                                    started_at timestamptz)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(errors, '[]'::jsonb)
         || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(),
                                                 'error', error, 'worker_id', worker_id,
                                                 'started_at', started_at))
$$;
