-- The counter trigger without joining its transition tables for every update.
--
-- jobs_updated joined old_rows and new_rows by id for each UPDATE of jobs, a hash join of
-- every claimed or acked row with itself (the claim and the ack are nearly all updates), to
-- learn each row's old and new status. Counting needs no join: a row's move is -1 for its old
-- (type, status) and +1 for its new one, and unchanged rows cancel out. The rest reads new_rows
-- alone where it can:
-- - a job is claimed in this statement exactly when it is PROCESSING with updated_at = now():
--   only the claim sets both (a heartbeat moves lease_expires_at alone, and every other
--   statement leaves PROCESSING); its queue wait is now() - run_at, which the claim keeps;
-- - completed attempts are the rise in COMPLETED rows: a job enters COMPLETED only by an ack
--   and never leaves it by an update;
-- - failed attempts (PROCESSING -> DEAD, or back to PENDING with the attempt kept: a nack or a
--   rescue, not a release, which gives the attempt back) still join, but only the rows that
--   are DEAD or PENDING now, and only when there are any — never for a claim or an ack.
-- Under a mixed UPDATE someone writes by hand the queue-wait and throughput figures could be
-- off; the per-status counters stay exact whatever the statement.
CREATE OR REPLACE FUNCTION forge.jobs_updated() RETURNS trigger LANGUAGE plpgsql
-- Hash (or merge) joins only: see migration 005.
SET enable_nestloop = off AS $$
DECLARE
  now_pending boolean := EXISTS (SELECT 1 FROM new_rows WHERE status = 'PENDING');
BEGIN
  INSERT INTO forge.job_count_deltas (type, status, n)
  SELECT type, status, sum(d) FROM (
    SELECT type, status, -1 AS d FROM old_rows
    UNION ALL
    SELECT type, status, 1 FROM new_rows
  ) AS moves
  GROUP BY type, status
  HAVING sum(d) <> 0;

  INSERT INTO forge.queue_wait_deltas (minute, bucket_ms, n)
  SELECT date_trunc('minute', now()),
         forge.wait_bucket(greatest(now() - run_at, interval '0')), count(*)
  FROM new_rows
  WHERE status = 'PROCESSING' AND updated_at = now()
  GROUP BY 2;

  INSERT INTO forge.throughput_deltas (minute, type, completed, failed)
  SELECT date_trunc('minute', now()), type, sum(d), 0
  FROM (SELECT type, -1 AS d FROM old_rows WHERE status = 'COMPLETED'
        UNION ALL
        SELECT type, 1 FROM new_rows WHERE status = 'COMPLETED') AS done
  GROUP BY type
  HAVING sum(d) > 0;

  IF now_pending OR EXISTS (SELECT 1 FROM new_rows WHERE status = 'DEAD') THEN
    INSERT INTO forge.throughput_deltas (minute, type, completed, failed)
    SELECT date_trunc('minute', now()), n.type, 0, count(*)
    FROM new_rows n JOIN old_rows o USING (id)
    WHERE n.status IN ('PENDING', 'DEAD') AND o.status = 'PROCESSING'
      AND (n.status = 'DEAD' OR n.attempts = o.attempts)
    GROUP BY n.type;
  END IF;

  IF now_pending THEN
    -- One wake-up per statement, not per row; delivered at commit.
    PERFORM pg_notify('forge_jobs', '');
  END IF;
  RETURN NULL;
END $$;
