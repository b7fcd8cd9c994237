-- The counter trigger of migration 009 in fewer passes over its transition tables. It read the
-- new rows up to five times and the old rows twice for each UPDATE of forge.jobs: whether any
-- row became PENDING, the per-status moves, the queue wait, the completed count (old and new
-- rows again) and whether any became DEAD; for a claim or an ack of 1,000 rows every pass reads
-- them all. Now one pass over the new rows answers the three questions (PENDING, DEAD, started
-- now), the moves are counted once and the completed count is read from them (a type's
-- completed throughput is its COMPLETED move when positive: the same sum the old query made),
-- and the queue-wait pass runs only for a statement that started jobs. What is counted, and
-- when a NOTIFY goes out, is unchanged.
CREATE OR REPLACE FUNCTION forge.jobs_updated() RETURNS trigger LANGUAGE plpgsql
-- Hash (or merge) joins only: see migration 005.
SET enable_nestloop = off AS $$
DECLARE
  now_pending boolean;
  now_dead boolean;
  started boolean;
BEGIN
  SELECT coalesce(bool_or(status = 'PENDING'), false),
         coalesce(bool_or(status = 'DEAD'), false),
         coalesce(bool_or(status = 'PROCESSING' AND updated_at = now()), false)
  INTO now_pending, now_dead, started
  FROM new_rows;
  WITH moves AS (
    SELECT type, status, sum(d) AS n FROM (
      SELECT type, status, -1 AS d FROM old_rows
      UNION ALL
      SELECT type, status, 1 FROM new_rows
    ) AS m
    GROUP BY type, status
    HAVING sum(d) <> 0
  ), counted AS (
    INSERT INTO forge.job_count_deltas (type, status, n)
    SELECT type, status, n FROM moves
  )
  INSERT INTO forge.throughput_deltas (minute, type, completed, failed)
  SELECT date_trunc('minute', now()), type, n, 0
  FROM moves
  WHERE status = 'COMPLETED' AND n > 0;
  IF started THEN
    INSERT INTO forge.queue_wait_deltas (minute, bucket_ms, n)
    SELECT date_trunc('minute', now()),
           forge.wait_bucket(greatest(now() - run_at, interval '0')), count(*)
    FROM new_rows
    WHERE status = 'PROCESSING' AND updated_at = now()
    GROUP BY 2;
  END IF;
  IF now_pending OR now_dead THEN
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
  ELSIF EXISTS (SELECT 1 FROM forge.queues
                WHERE concurrency_limit > 0 OR key_concurrency_limit > 0) THEN
    IF EXISTS (SELECT 1 FROM new_rows n JOIN forge.queues q USING (type)
               WHERE n.status IN ('COMPLETED', 'DEAD', 'CANCELLED')
                 AND (q.concurrency_limit > 0 OR q.key_concurrency_limit > 0)) THEN
      PERFORM pg_notify('forge_jobs', '');
    END IF;
  END IF;
  RETURN NULL;
END $$;
