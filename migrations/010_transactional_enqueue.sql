-- Transactional enqueue: forge.enqueue inserts one job inside the caller's own transaction, so
-- the job exists if and only if that transaction commits (an order row and its receipt job
-- together or not at all). The jobs' insert trigger sends the NOTIFY that wakes lease streams;
-- PostgreSQL delivers it at commit, and never for a transaction that rolls back.
--
-- It checks its arguments as the Enqueue RPC does (broker/forge_broker/validate.py) and refuses
-- a bad one with SQLSTATE 22023 (invalid_parameter_value), a message `FIELD: problem`, and the
-- field in the error's COLUMN (psycopg: diag.column_name), table forge.jobs. Each argument is
-- named as the column it fills. NUL cannot reach it: PostgreSQL refuses NUL in text and \u0000
-- in jsonb before any function runs.
--
-- SECURITY DEFINER, run as its owner (the role that migrates, which owns forge.jobs), with a
-- fixed search_path: a role granted USAGE on the schema and EXECUTE on this function can
-- enqueue without any privilege on the tables (docs/operations.md, "Transactional enqueue").
CREATE FUNCTION forge.enqueue(
  type            text,
  payload         jsonb       DEFAULT '{}',
  priority        integer     DEFAULT NULL,
  max_retries     integer     DEFAULT NULL,
  run_at          timestamptz DEFAULT NULL,
  idempotency_key text        DEFAULT NULL,
  concurrency_key text        DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  field   text;
  problem text;
  job_id  uuid;
  p_key   text := nullif(enqueue.idempotency_key, '');
  c_key   text := nullif(enqueue.concurrency_key, '');
BEGIN
  -- The rules of validate.new_job, in its order; an argument left NULL takes its default.
  IF coalesce(enqueue.type, '') = '' THEN
    field := 'type'; problem := 'is required';
  ELSIF enqueue.type !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
    -- forge_common.names.TYPE_NAME_RULE
    field := 'type'; problem := 'must be 1 to 128 characters of [A-Za-z0-9_.:-]';
  ELSIF NOT coalesce(enqueue.priority, 0) BETWEEN -1000 AND 1000 THEN
    field := 'priority'; problem := format('must be in [-1000, 1000], got %s', enqueue.priority);
  ELSIF NOT coalesce(enqueue.max_retries, 3) BETWEEN 0 AND 100 THEN
    field := 'max_retries';
    problem := format('must be in [0, 100], got %s', enqueue.max_retries);
  ELSIF jsonb_typeof(coalesce(enqueue.payload, '{}')) <> 'object' THEN
    field := 'payload';
    problem := format('must be a JSON object, got %s', jsonb_typeof(enqueue.payload));
  ELSIF jsonb_path_exists(enqueue.payload,
                          'strict $.**{20} ? (@.type() == "object" || @.type() == "array")') THEN
    -- forge_common.structs.MAX_DEPTH: an object or array 20 levels below the payload (which is
    -- level 1) is at level 21. The walk goes no deeper than that.
    field := 'payload';
    problem := 'nests objects and arrays more than 20 levels deep (the object itself is level 1)';
  ELSIF octet_length(enqueue.payload::text) > 1048576 THEN
    -- PostgreSQL's JSON text puts a space after each ':' and ',', so it is a little longer than
    -- the compact JSON the broker measures: whatever passes here passes there.
    field := 'payload'; problem := 'is larger than 1048576 bytes as JSON';
  ELSIF enqueue.run_at IS NOT NULL
        AND NOT (isfinite(enqueue.run_at) AND enqueue.run_at < '10000-01-01 00:00+00') THEN
    -- A job's times travel as protobuf Timestamps, which end with the year 9999.
    field := 'run_at'; problem := 'must be a finite time before the year 10000';
  ELSIF char_length(p_key) > 255 THEN
    field := 'idempotency_key'; problem := 'must be at most 255 characters';
  ELSIF char_length(c_key) > 255 THEN
    field := 'concurrency_key'; problem := 'must be at most 255 characters';
  END IF;
  IF field IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = field || ': ' || problem,
                          SCHEMA = 'forge', TABLE = 'jobs', COLUMN = field;
  END IF;

  -- As the broker's insert_jobs: a run_at in the past (or none) is now; the id is the column's
  -- default, a version-7 UUID like the broker's own.
  INSERT INTO forge.jobs (type, payload, priority, max_retries, run_at, idempotency_key,
                          concurrency_key)
  VALUES (enqueue.type, coalesce(enqueue.payload, '{}'), coalesce(enqueue.priority, 0),
          coalesce(enqueue.max_retries, 3), greatest(coalesce(enqueue.run_at, now()), now()),
          p_key, c_key)
  ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING id INTO job_id;
  IF job_id IS NULL THEN
    -- The key is taken: the job holding it, as Enqueue answers. ON CONFLICT waited for the
    -- transaction that took it to commit, so this statement sees that job.
    SELECT j.id INTO job_id FROM forge.jobs j WHERE j.idempotency_key = p_key;
  END IF;
  RETURN job_id;
END $$;

REVOKE ALL ON FUNCTION forge.enqueue(text, jsonb, integer, integer, timestamptz, text, text)
  FROM PUBLIC;
