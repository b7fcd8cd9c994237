-- Forge's schema: the jobs table, its indexes, the counters that keep Stats cheap at any
-- table size, and the registry of workers with an open Lease stream.

CREATE SCHEMA IF NOT EXISTS forge;

-- Time-ordered UUIDs (version 7): new rows land at the right edge of the primary key, and id
-- order is creation order, which ListJobs pages by.
CREATE FUNCTION forge.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1), 'hex')::uuid
$$;

-- Retry delay after failed attempt number `attempts`: base · 2^(attempts-1), at most one hour,
-- less up to 20 % jitter so a burst of failures does not come back as a burst.
CREATE FUNCTION forge.backoff(attempts integer, base_seconds double precision)
RETURNS interval LANGUAGE sql VOLATILE AS $$
  SELECT least(3600.0, base_seconds * power(2.0, greatest(attempts, 1) - 1))
         * (0.8 + 0.2 * random()) * interval '1 second'
$$;

CREATE TABLE forge.jobs (
  id               uuid        PRIMARY KEY DEFAULT forge.uuid_v7(),
  type             text        NOT NULL,
  payload          jsonb       NOT NULL DEFAULT '{}',
  priority         integer     NOT NULL DEFAULT 0,
  max_retries      integer     NOT NULL DEFAULT 3,
  attempts         integer     NOT NULL DEFAULT 0,
  status           text        NOT NULL DEFAULT 'PENDING'
                   CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'DEAD', 'CANCELLED')),
  run_at           timestamptz NOT NULL DEFAULT now(),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  last_error       text,
  result           jsonb,
  worker_id        text,
  lease_token      uuid,
  lease_expires_at timestamptz,
  idempotency_key  text
) WITH (
  -- A queue table churns: vacuum and analyze it long before the 20 % default.
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_analyze_scale_factor = 0.02
);

-- The claim: runnable jobs in priority order. Partial, so it holds only the pending set.
CREATE INDEX jobs_claim_idx ON forge.jobs (priority DESC, run_at, id) WHERE status = 'PENDING';
-- Per type: oldest runnable job, scheduled count, next scheduled run_at.
CREATE INDEX jobs_pending_type_idx ON forge.jobs (type, run_at) WHERE status = 'PENDING';
-- The rescuer's scan for expired leases.
CREATE INDEX jobs_lease_idx ON forge.jobs (lease_expires_at) WHERE status = 'PROCESSING';
-- Listing by status (the dead-letter queue), newest first, and retention's sweep.
CREATE INDEX jobs_status_idx ON forge.jobs (status, id);
CREATE UNIQUE INDEX jobs_idempotency_key_idx ON forge.jobs (idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Counters. Triggers append deltas (no hot rows, so no contention between writers); the
-- broker's maintenance folds them into the rolled-up tables. Readers add both.
CREATE TABLE forge.job_counts (
  type   text   NOT NULL,
  status text   NOT NULL,
  n      bigint NOT NULL,
  PRIMARY KEY (type, status)
);
CREATE TABLE forge.job_count_deltas (
  type   text   NOT NULL,
  status text   NOT NULL,
  n      bigint NOT NULL
);

-- Attempts finished per minute and type.
CREATE TABLE forge.throughput (
  minute    timestamptz NOT NULL,
  type      text        NOT NULL,
  completed bigint      NOT NULL,
  failed    bigint      NOT NULL,
  PRIMARY KEY (minute, type)
);
CREATE TABLE forge.throughput_deltas (
  minute    timestamptz NOT NULL,
  type      text        NOT NULL,
  completed bigint      NOT NULL,
  failed    bigint      NOT NULL
);

-- Queue wait (lease time - run_at) as a histogram per minute; bucket_ms is the bucket's upper bound.
CREATE TABLE forge.queue_wait (
  minute    timestamptz      NOT NULL,
  bucket_ms double precision NOT NULL,
  n         bigint           NOT NULL,
  PRIMARY KEY (minute, bucket_ms)
);
CREATE TABLE forge.queue_wait_deltas (
  minute    timestamptz      NOT NULL,
  bucket_ms double precision NOT NULL,
  n         bigint           NOT NULL
);

CREATE FUNCTION forge.wait_bucket(wait interval) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(min(b), 86400000)
  FROM unnest('{1,2,5,10,20,50,100,200,500,1000,2000,5000,10000,30000,60000,300000,900000,3600000}'::float8[]) AS b
  WHERE b >= extract(epoch FROM wait) * 1000
$$;

CREATE FUNCTION forge.jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO forge.job_count_deltas (type, status, n)
  SELECT type, status, count(*) FROM new_rows GROUP BY type, status;
  IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'PENDING') THEN
    -- One wake-up per statement, not per row; delivered at commit.
    PERFORM pg_notify('forge_jobs', '');
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION forge.jobs_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH changed AS (
    SELECT o.type, o.status AS old_status, n.status AS new_status,
           o.run_at AS old_run_at, o.attempts AS old_attempts, n.attempts AS new_attempts
    FROM old_rows o JOIN new_rows n USING (id)
    WHERE o.status <> n.status
  ), counts AS (
    INSERT INTO forge.job_count_deltas (type, status, n)
    SELECT type, status, sum(d) FROM (
      SELECT type, old_status AS status, -1 AS d FROM changed
      UNION ALL
      SELECT type, new_status, 1 FROM changed
    ) AS moves
    GROUP BY type, status
    HAVING sum(d) <> 0
  ), finished AS (
    -- A release (PROCESSING -> PENDING with the attempt given back) is not a failure.
    INSERT INTO forge.throughput_deltas (minute, type, completed, failed)
    SELECT date_trunc('minute', now()), type,
           count(*) FILTER (WHERE new_status = 'COMPLETED'),
           count(*) FILTER (WHERE new_status IN ('PENDING', 'DEAD'))
    FROM changed
    WHERE old_status = 'PROCESSING'
      AND (new_status IN ('COMPLETED', 'DEAD')
           OR (new_status = 'PENDING' AND new_attempts = old_attempts))
    GROUP BY type
  )
  INSERT INTO forge.queue_wait_deltas (minute, bucket_ms, n)
  SELECT date_trunc('minute', now()),
         forge.wait_bucket(greatest(now() - old_run_at, interval '0')), count(*)
  FROM changed
  WHERE old_status = 'PENDING' AND new_status = 'PROCESSING'
  GROUP BY 2;

  IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'PENDING') THEN
    PERFORM pg_notify('forge_jobs', '');
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION forge.jobs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO forge.job_count_deltas (type, status, n)
  SELECT type, status, -count(*) FROM old_rows GROUP BY type, status;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON forge.jobs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION forge.jobs_inserted();
CREATE TRIGGER jobs_updated AFTER UPDATE ON forge.jobs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION forge.jobs_updated();
CREATE TRIGGER jobs_deleted AFTER DELETE ON forge.jobs
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION forge.jobs_deleted();

-- Workers with an open Lease stream, on any broker. A broker refreshes last_seen for its own
-- streams every tick; rows of a broker that died age out.
CREATE TABLE forge.workers (
  stream_id     uuid        PRIMARY KEY,
  worker_id     text        NOT NULL,
  broker_id     text        NOT NULL,
  types         text[]      NOT NULL,
  max_in_flight integer     NOT NULL,
  in_flight     integer     NOT NULL DEFAULT 0,
  connected_at  timestamptz NOT NULL DEFAULT now(),
  last_seen     timestamptz NOT NULL DEFAULT now()
);
