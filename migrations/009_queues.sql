-- Queues: per-type flow control (pause, fleet-wide concurrency, per-key concurrency, rate).
--
-- A queue is a job type. forge.queues holds a row only for a type someone configured (paused,
-- or given a limit); every other type runs unlimited and is claimed exactly as before. The
-- broker keeps these rows in memory, reloaded when the statement that changes one sends NOTIFY
-- forge_queues (queries.sql, upsert_queue), and claims a paused or limited type only through a
-- second statement that locks the type's row first (claim_limited_jobs).
CREATE TABLE forge.queues (
  type                  text        PRIMARY KEY,
  paused                boolean     NOT NULL DEFAULT false,
  -- 0 means unlimited, for each limit.
  concurrency_limit     integer     NOT NULL DEFAULT 0 CHECK (concurrency_limit >= 0),
  key_concurrency_limit integer     NOT NULL DEFAULT 0 CHECK (key_concurrency_limit >= 0),
  rate_limit            integer     NOT NULL DEFAULT 0 CHECK (rate_limit >= 0),
  rate_period           interval    NOT NULL DEFAULT '0' CHECK (rate_period >= '0'),
  -- The rate limit's sliding log: one entry per limited claim that started jobs, when
  -- (rate_log_at, the database clock) and how many (rate_log_n), oldest first. Only claims
  -- write it, under the row lock; entries older than rate_period are dropped as they go.
  rate_log_at           timestamptz[] NOT NULL DEFAULT '{}',
  rate_log_n            integer[]     NOT NULL DEFAULT '{}',
  updated_at            timestamptz NOT NULL DEFAULT now(),
  CHECK ((rate_limit = 0) = (rate_period = '0'))
);

ALTER TABLE forge.jobs
  -- Jobs sharing a key within a type run at most key_concurrency_limit at once.
  ADD COLUMN concurrency_key text,
  -- When the current (or last) attempt was leased; with updated_at at an ack, each attempt's
  -- interval of running.
  ADD COLUMN leased_at timestamptz;

-- A schedule's job template carries a concurrency key too; each job it fires gets it.
ALTER TABLE forge.schedules ADD COLUMN concurrency_key text;

-- Both indexes hold keyed jobs only, so a type without keys writes no entry in them.
-- A key-limited claim walks the distinct keys with pending jobs, and each key's best jobs.
CREATE INDEX IF NOT EXISTS jobs_pending_key_idx
  ON forge.jobs (type, concurrency_key, priority DESC, run_at, id)
  WHERE status = 'PENDING' AND concurrency_key IS NOT NULL;
-- How many jobs of each key of a type are running.
CREATE INDEX IF NOT EXISTS jobs_running_key_idx
  ON forge.jobs (type, concurrency_key)
  WHERE status = 'PROCESSING' AND concurrency_key IS NOT NULL;

-- The counter trigger of migration 006, and one more wake-up: a job of a type with a
-- concurrency limit that stops running (acked, dead, cancelled) leaves room for another, so
-- every broker waiting to claim the type is told, whichever broker recorded the change. Retries
-- and rescues (back to PENDING) already notify. Types without limits cost one look at the
-- (small) queues table per statement.
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
