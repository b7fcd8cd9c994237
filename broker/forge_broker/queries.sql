-- Every statement the broker runs, each named for what it does. Loaded by forge_broker.sql.
-- Parameters use psycopg's %(name)s style. Claims and sweeps select ids with
-- `id = ANY(ARRAY(SELECT ...))`: under a cached generic plan that form keeps the index lookup,
-- where `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` can turn into a full scan.

-- name: insert_jobs
-- Insert a batch in one statement. The batch travels as one JSON array (one parameter): the
-- broker writes it with a string join, where adapting seven parallel arrays cost more than
-- the INSERT itself. Ids are made by the caller so results map back to requests. A job handed
-- off to a waiting lease stream (w: worker, l: lease token, s: lease seconds) is born leased,
-- PROCESSING in its first attempt, as claim_jobs would leave it. Answers the
-- statement's now() (every new row's created_at, and its run_at when none or a past one was
-- given), how many rows went in, and the ids of the keyed rows that did.
-- The broker composes skip_taken_keys in at its placeholder only for a batch where some job
-- has an idempotency key: ON CONFLICT's speculative insertion costs every row an extra WAL
-- record: a tenth more WAL, and 5 to 10 percent more time for a batch of a thousand or more.
WITH inserted AS (
  INSERT INTO forge.jobs (id, type, payload, priority, max_retries, run_at, idempotency_key,
                          concurrency_key, trace_context, status, attempts, worker_id,
                          lease_token, lease_expires_at, leased_at)
  SELECT i, t, p, r, m, greatest(coalesce(a, now()), now()), k, c, x,
         CASE WHEN l IS NULL THEN 'PENDING' ELSE 'PROCESSING' END, (l IS NOT NULL)::integer, w,
         l, now() + s * interval '1 second', CASE WHEN l IS NOT NULL THEN now() END
  FROM jsonb_to_recordset(%(jobs)s::text::jsonb)
       AS t(i uuid, t text, p jsonb, r integer, m integer, a timestamptz, k text, c text,
            x jsonb, w text, l uuid, s integer)
  {skip_taken_keys}
  RETURNING id, idempotency_key
)
SELECT now(), count(*), array_agg(id::text) FILTER (WHERE idempotency_key IS NOT NULL)
FROM inserted;

-- name: skip_taken_keys
-- insert_jobs's conflict clause: a row whose idempotency key is taken is skipped, and the
-- broker fetches the job that holds the key.
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING

-- name: copy_jobs
-- A batch insert_jobs would write as is (no idempotency key, run_at or hand-off: see
-- store._copyable), streamed in with COPY: the database parses plain fields instead of one JSON
-- array, some 15 percent less of its time per row. The columns left out take their defaults:
-- PENDING, and now() for run_at, created_at and updated_at, as insert_jobs leaves such a job.
-- The statement's insert trigger counts the rows and wakes the brokers as for an INSERT.
COPY forge.jobs (id, type, payload, priority, max_retries, concurrency_key, trace_context)
FROM STDIN;

-- name: jobs_by_idempotency_keys
SELECT * FROM forge.jobs WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: claim_jobs
-- Lease up to %(limit)s runnable jobs to a worker, highest priority first, then oldest run_at.
-- The broker composes in the candidates: claim_one_type for a stream of one type (a direct walk
-- of jobs_pending_idx), else claim_types; and the RETURNING columns the stream's view sends:
-- lean_columns for JOB_VIEW_LEAN (workerd's view, the hot path of every drain), full_columns
-- for the full view, so each view costs one round trip and the lean one returns nothing it does
-- not send. SKIP LOCKED lets concurrent claimers pass each other. The transaction-scoped
-- advisory lock is a second guard for any other process that coordinates on the same keys,
-- tried on the rows the candidates chose (their LIMIT and FOR UPDATE keep them whole) and not
-- in the UPDATE's own WHERE, where a plan that scans the table would take it on every row it
-- scans.
-- Each lease token is the MD5 of a random key the broker draws for this claim (%(token_key)s,
-- 128 bits) and the job's id: unguessable without the key, and every token made with one key
-- goes to the one stream the claim is for. gen_random_uuid() read the kernel's random source
-- for every row (three system calls each on a server built without OpenSSL, as the embedded
-- one is): a tenth of PostgreSQL's time in a drain.
UPDATE forge.jobs
SET status = 'PROCESSING',
    attempts = attempts + 1,
    worker_id = %(worker_id)s,
    lease_token = md5(%(token_key)s || id::text)::uuid,
    lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
    leased_at = now(),
    updated_at = now()
WHERE id = ANY(ARRAY(
        SELECT id FROM ({candidates}) AS chosen
        WHERE pg_try_advisory_xact_lock(%(lock_space)s, hashtext(id::text))))
RETURNING {columns};

-- name: claim_one_type
-- claim_jobs's candidates for a stream of one type: its best runnable jobs, in index order.
SELECT id FROM forge.jobs
WHERE status = 'PENDING' AND type = (%(types)s::text[])[1] AND run_at <= now()
ORDER BY priority DESC, run_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: claim_types
-- claim_jobs's candidates for a stream of several types, or of any (no types): each type's
-- best runnable jobs, as claim_one_type takes them, and the best of those. Rows a type's walk
-- locked beyond the ones chosen are free again when the statement's transaction ends. Any
-- type: the types with pending jobs, found in jobs_pending_idx one index descent each (the
-- recursive part: from the last type down, each found at the end of its range, where its
-- newest jobs are, not at the front, where the entries of jobs just claimed lie until vacuum),
-- but for the paused or limited ones (skip_held_types, composed in only while some are: those
-- are claimed by claim_limited_jobs alone).
WITH RECURSIVE pending_types AS (
  (SELECT type FROM forge.jobs WHERE status = 'PENDING' ORDER BY type DESC LIMIT 1)
  UNION ALL
  SELECT (SELECT j.type FROM forge.jobs AS j
          WHERE j.status = 'PENDING' AND j.type < p.type ORDER BY j.type DESC LIMIT 1)
  FROM pending_types AS p WHERE p.type IS NOT NULL
)
SELECT c.id FROM (
  SELECT unnest(%(types)s::text[])
  UNION ALL
  SELECT type FROM pending_types
  WHERE cardinality(%(types)s::text[]) = 0 AND type IS NOT NULL {held}
) AS t(type)
CROSS JOIN LATERAL (
  SELECT id, priority, run_at FROM forge.jobs
  WHERE status = 'PENDING' AND type = t.type AND run_at <= now()
  ORDER BY priority DESC, run_at, id
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED) AS c
ORDER BY c.priority DESC, c.run_at, c.id
LIMIT %(limit)s

-- name: skip_held_types
AND type <> ALL(%(held)s::text[])

-- name: lock_queue
-- The first statement of a limited claim: lock the type's row, so that claims of the type on
-- every broker take turns, and read its settings and how many starts its rate log holds within
-- the window. A statement of its own: under READ COMMITTED the next statement's snapshot is
-- taken after the lock is held, so it counts the jobs the previous holder claimed (counted in
-- this statement, they could be missed when it had to wait).
SELECT paused, concurrency_limit, key_concurrency_limit, rate_limit,
       extract(epoch FROM rate_period)::float8 AS rate_period,
       coalesce((SELECT sum(n) FROM unnest(rate_log_at, rate_log_n) AS l(at, n)
                 WHERE l.at > clock_timestamp() - rate_period), 0)::int AS rate_used,
       (SELECT min(l.at) FROM unnest(rate_log_at, rate_log_n) AS l(at, n)
        WHERE l.at > clock_timestamp() - rate_period) + rate_period AS rate_frees_at
FROM forge.queues
WHERE type = %(type)s
FOR UPDATE;

-- name: claim_limited_jobs
-- Lease up to %(limit)s jobs of one paused-or-limited type, in the transaction holding its
-- forge.queues row (lock_queue): at most concurrency_limit of the type PROCESSING in all, and
-- the best jobs first. Running jobs are counted from the status counters (forge.job_counts plus
-- the deltas not folded yet, both written in the transaction that changes a status), so the
-- count needs no index on the jobs table, whose every claim would pay for one. Only claims
-- raise it, and they take turns on the row, so the count and the claim cannot race; an ack
-- committing meanwhile only leaves more room than counted. The candidates are composed in at
-- their placeholder: by_type, or by_key under a key limit. SKIP LOCKED passes rows another
-- statement holds (a cancel), and the status is checked again on each row locked.
-- A job's start is its leased_at: the clock once this statement's snapshot is taken, after the
-- end of every attempt it counted as over (so the recorded attempts of a type never overlap
-- deeper than its limit). Under a rate limit the same time and the number started go into the
-- type's rate log (entries that left the window go), in this statement.
WITH clock AS MATERIALIZED (
  SELECT clock_timestamp() AS at
), running AS (
  SELECT coalesce(sum(n), 0) AS n
  FROM (SELECT n FROM forge.job_counts WHERE type = %(type)s AND status = 'PROCESSING'
        UNION ALL
        SELECT n FROM forge.job_count_deltas WHERE type = %(type)s AND status = 'PROCESSING') AS c
), room AS (
  SELECT CASE WHEN %(concurrency_limit)s = 0 THEN %(limit)s
              ELSE least(%(limit)s, greatest(0, %(concurrency_limit)s - n)) END AS n
  FROM running
), candidates AS (
  {candidates}
), claimed AS (
  UPDATE forge.jobs
  SET status = 'PROCESSING',
      attempts = attempts + 1,
      worker_id = %(worker_id)s,
      lease_token = md5(%(token_key)s || id::text)::uuid,  -- as claim_jobs makes them
      lease_expires_at = now() + %(lease_seconds)s * interval '1 second',
      leased_at = (SELECT at FROM clock),
      updated_at = now()
  WHERE id = ANY(ARRAY(
          SELECT id FROM (
            SELECT id FROM forge.jobs
            WHERE id = ANY(ARRAY(SELECT id FROM candidates
                                 ORDER BY priority DESC, run_at, id
                                 LIMIT (SELECT n FROM room)))
              AND status = 'PENDING'
            FOR UPDATE SKIP LOCKED) AS chosen
          WHERE pg_try_advisory_xact_lock(%(lock_space)s, hashtext(id::text))))
  RETURNING {columns}
), logged AS (
  UPDATE forge.queues
  SET rate_log_at = array(SELECT l.at FROM unnest(rate_log_at, rate_log_n) AS l(at, n)
                          WHERE l.at > clock.at - rate_period ORDER BY l.at) || clock.at,
      rate_log_n = array(SELECT l.n FROM unnest(rate_log_at, rate_log_n) AS l(at, n)
                         WHERE l.at > clock.at - rate_period ORDER BY l.at) || started.n
  FROM clock, (SELECT count(*)::int AS n FROM claimed) AS started
  WHERE type = %(type)s AND rate_limit > 0 AND started.n > 0
)
SELECT * FROM claimed;

-- name: by_type
-- claim_limited_jobs's candidates without a key limit: the type's best runnable jobs.
SELECT id, priority, run_at FROM forge.jobs
WHERE type = %(type)s AND status = 'PENDING' AND run_at <= now()
ORDER BY priority DESC, run_at, id
LIMIT %(limit)s

-- name: by_key
-- claim_limited_jobs's candidates under a key limit: jobs without a key as by_type, and for
-- each key with pending jobs (walked one key at a time through jobs_pending_key_idx, however
-- many jobs each holds) its best runnable jobs, as many as the key has room for.
WITH RECURSIVE keys AS (
  (SELECT concurrency_key AS k FROM forge.jobs
   WHERE type = %(type)s AND status = 'PENDING' AND concurrency_key IS NOT NULL
   ORDER BY concurrency_key LIMIT 1)
  UNION ALL
  SELECT (SELECT concurrency_key FROM forge.jobs
          WHERE type = %(type)s AND status = 'PENDING' AND concurrency_key > keys.k
          ORDER BY concurrency_key LIMIT 1)
  FROM keys WHERE keys.k IS NOT NULL
), key_running AS (
  SELECT concurrency_key AS k, count(*) AS n FROM forge.jobs
  WHERE type = %(type)s AND status = 'PROCESSING' AND concurrency_key IS NOT NULL
  GROUP BY concurrency_key
)
SELECT j.id, j.priority, j.run_at
FROM keys
CROSS JOIN LATERAL (
  SELECT id, priority, run_at FROM forge.jobs
  WHERE type = %(type)s AND status = 'PENDING' AND concurrency_key = keys.k
    AND run_at <= now()
  ORDER BY priority DESC, run_at, id
  LIMIT greatest(0, least(%(limit)s, %(key_limit)s
                          - coalesce((SELECT n FROM key_running r WHERE r.k = keys.k), 0)))) AS j
WHERE keys.k IS NOT NULL
UNION ALL
(SELECT id, priority, run_at FROM forge.jobs
 WHERE type = %(type)s AND status = 'PENDING' AND run_at <= now() AND concurrency_key IS NULL
 ORDER BY priority DESC, run_at, id
 LIMIT %(limit)s)

-- name: queue_settings
-- Every configured type's settings (the broker's copy, and ListQueues).
SELECT type, paused, concurrency_limit, key_concurrency_limit, rate_limit,
       extract(epoch FROM rate_period)::float8 AS rate_period
FROM forge.queues
ORDER BY type;

-- name: upsert_queue
-- Create or change one type's settings; every column is given (the broker merged the change
-- into the current settings, read under the row's lock by lock_queue_for_update).
INSERT INTO forge.queues AS q (type, paused, concurrency_limit, key_concurrency_limit,
                               rate_limit, rate_period)
VALUES (%(type)s, %(paused)s, %(concurrency_limit)s, %(key_concurrency_limit)s,
        %(rate_limit)s, %(rate_period)s * interval '1 second')
ON CONFLICT (type) DO UPDATE
SET paused = excluded.paused, concurrency_limit = excluded.concurrency_limit,
    key_concurrency_limit = excluded.key_concurrency_limit,
    rate_limit = excluded.rate_limit, rate_period = excluded.rate_period,
    updated_at = now();

-- name: notify_queues
-- Sent at the commit of a settings change: every broker reloads its copy of the settings and
-- looks for work (a resume, a raised limit).
SELECT pg_notify('forge_queues', %(type)s);

-- name: add_queue
-- UpdateQueue's first statement: the type's row, with the defaults if it has none yet, so that
-- there is a row to lock even for a type's first change.
INSERT INTO forge.queues (type) VALUES (%(type)s) ON CONFLICT (type) DO NOTHING;

-- name: lock_queue_for_update
-- UpdateQueue reads the settings it changes under the row's lock, so two changes of different
-- fields at once both land.
SELECT type, paused, concurrency_limit, key_concurrency_limit, rate_limit,
       extract(epoch FROM rate_period)::float8 AS rate_period
FROM forge.queues WHERE type = %(type)s FOR UPDATE;

-- name: lean_columns
-- claim_jobs's columns for the lean view: the payload as the text it is sent as, the queue
-- wait in seconds, and the trace context (NULL unless the job was enqueued with tracing on).
id::text AS id, lease_token::text AS lease_token, type, payload::text AS payload_json, priority,
attempts, max_retries, extract(epoch FROM now() - run_at)::float8 AS waited, trace_context

-- name: full_columns
-- claim_jobs's columns for the full view: each job as stored once leased.
*

-- name: release_jobs
-- Give back jobs leased to a stream that closed before they were sent: PENDING again, the
-- attempt not counted.
UPDATE forge.jobs j
SET status = 'PENDING', attempts = attempts - 1, worker_id = NULL,
    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS l(id, token)
WHERE j.id = l.id AND j.lease_token = l.token;

-- name: ack_jobs
-- Complete jobs, each only for the current holder of its lease (late acks before a rescue
-- count). One statement for every ack the completer gathered, passed as one JSON array as in
-- insert_jobs; refused ones are not returned.
-- A lease token is set exactly while a job is PROCESSING (constraint jobs_lease_token_check),
-- so matching it is the whole test, and the statements on leases name no status: given
-- `status = 'PROCESSING'`, the planner, trusting statistics that see few such rows, may walk
-- every entry of jobs_lease_idx, dead ones of finished jobs included, on each call: an ack
-- cost that grows with every job acked since the last vacuum.
UPDATE forge.jobs j
SET status = 'COMPLETED', result = a.r,
    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
FROM jsonb_to_recordset(%(acks)s::text::jsonb) AS a(i uuid, t uuid, r jsonb)
WHERE j.id = a.i AND j.lease_token = a.t
RETURNING j.id::text;

-- name: nack_jobs
-- Failed attempts: back to PENDING after a delay (retry_after, else the backoff), or DEAD when
-- permanent or out of retries. Same lease rule (the token alone) and batching as ack_jobs.
-- Each failure is appended to the job's attempt history in the same statement (see
-- attempt_error).
UPDATE forge.jobs j
SET status = CASE WHEN n.p OR j.attempts > j.max_retries THEN 'DEAD' ELSE 'PENDING' END,
    run_at = CASE WHEN n.p OR j.attempts > j.max_retries THEN j.run_at
                  ELSE now() + coalesce(n.a * interval '1 second',
                                        forge.backoff(j.attempts, %(backoff_base)s)) END,
    last_error = n.e,
    errors = forge.attempt_error(j.errors, j.attempts, n.e, j.worker_id, j.leased_at),
    lease_token = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
FROM jsonb_to_recordset(%(nacks)s::text::jsonb)
     AS n(i uuid, t uuid, e text, a double precision, p boolean)
WHERE j.id = n.i AND j.lease_token = n.t
RETURNING j.id::text, j.status, j.run_at;

-- name: job_statuses
-- Why acks or nacks were refused: the job is gone, or in which status it is now.
SELECT id::text, status FROM forge.jobs WHERE id = ANY(%(ids)s::uuid[]);

-- name: extend_leases
-- Heartbeat: push the deadline of every lease still held (the token alone: see ack_jobs).
UPDATE forge.jobs j
SET lease_expires_at = now() + %(lease_seconds)s * interval '1 second'
FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS l(id, token)
WHERE j.id = l.id AND j.lease_token = l.token
RETURNING j.id::text, j.lease_expires_at;

-- name: leases_still_held
-- Which of these leases are still current (a stream's in-flight set, reconciled with acks
-- that reached another broker).
SELECT j.id::text
FROM forge.jobs j
JOIN unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS l(id, token)
  ON j.id = l.id AND j.lease_token = l.token;

-- name: rescue_expired_leases
-- Expired leases are failed attempts: retry with backoff, or DEAD. Safe with several brokers:
-- each row is locked by exactly one sweeper. The error (whose worker let the lease lapse) is
-- written as last_error and appended to the attempt history, so it is made once, in the join.
UPDATE forge.jobs j
SET status = CASE WHEN j.attempts > j.max_retries THEN 'DEAD' ELSE 'PENDING' END,
    run_at = CASE WHEN j.attempts > j.max_retries THEN j.run_at
                  ELSE now() + forge.backoff(j.attempts, %(backoff_base)s) END,
    last_error = x.error,
    errors = forge.attempt_error(j.errors, j.attempts, x.error, j.worker_id, j.leased_at),
    lease_token = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
FROM (SELECT id, 'lease expired: worker ' || coalesce(worker_id, '?')
                 || ' did not ack, nack or heartbeat in time' AS error
      FROM forge.jobs
      WHERE id = ANY(ARRAY(
              SELECT id FROM forge.jobs
              WHERE status = 'PROCESSING' AND lease_expires_at < now()
              ORDER BY lease_expires_at
              LIMIT %(limit)s
              FOR UPDATE SKIP LOCKED))) AS x
WHERE j.id = x.id
RETURNING j.id::text, j.status;

-- name: get_job
SELECT * FROM forge.jobs WHERE id = %(id)s;

-- name: list_jobs
-- ListJobs (and ListDeadJobs), one keyset page. The broker composes in one filter_* fragment
-- per filter set, so that the planner sees only the predicates that apply and picks the index
-- for them (a generic `(x IS NULL OR ...)` form hides them); the order's after_* fragment from
-- the second page on; and its order_* key. Every order ends in id, so it is total and the
-- keyset condition skips exactly the rows already listed. Indexes: NEWEST and OLDEST read the
-- primary key, or jobs_by_status_idx (status, id) with a status; PRIORITY (one status, never
-- COMPLETED: the broker refuses the rest) reads jobs_done_priority_idx for DEAD and CANCELLED
-- jobs; PROCESSING jobs are read through jobs_lease_idx and sorted (as many as are in flight).
-- RUN_AT of DEAD and CANCELLED jobs is list_jobs_by_run_at; PRIORITY and RUN_AT of PENDING
-- jobs are list_pending_jobs.
SELECT * FROM forge.jobs
WHERE true {filters} {after}
ORDER BY {order}
LIMIT %(limit)s

-- name: list_jobs_by_run_at
-- RUN_AT of one status group (DEAD and CANCELLED) through the group's PRIORITY index
-- (priority DESC, run_at, id): an index in run_at order would cost each ack (finished jobs) one
-- more entry, where jobs of a queue have few distinct priorities. So: the distinct
-- priorities, one index descent each (the recursive part); for each, its first jobs in
-- (run_at, id) order, which the index holds in that order within one priority; the page is
-- the first of those, merged.
SELECT j.* FROM (
  WITH RECURSIVE priorities AS (
    (SELECT priority FROM forge.jobs WHERE true {group} ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT priority FROM forge.jobs
            WHERE true {group} AND priority < priorities.priority
            ORDER BY priority DESC LIMIT 1)
    FROM priorities WHERE priorities.priority IS NOT NULL
  )
  SELECT priority FROM priorities WHERE priority IS NOT NULL
) AS p
CROSS JOIN LATERAL (
  SELECT * FROM forge.jobs
  WHERE true {group} AND priority = p.priority {filters} {after}
  ORDER BY run_at, id
  LIMIT %(limit)s
) AS j
ORDER BY j.run_at, j.id
LIMIT %(limit)s

-- name: list_pending_jobs
-- PRIORITY and RUN_AT of PENDING jobs through jobs_pending_idx (type, priority DESC, run_at,
-- id), the same way: the (type, priority) groups with pending jobs, one index descent each (the
-- recursive part: the type's next priority, else the next type's first); for each, its first
-- jobs in (run_at, id) order; the page is the first of those in the listing's order.
SELECT j.* FROM (
  WITH RECURSIVE groups AS (
    (SELECT type AS g_type, priority AS g_priority FROM forge.jobs
     WHERE status = 'PENDING' ORDER BY type, priority DESC LIMIT 1)
    UNION ALL
    SELECT n.g_type, n.g_priority FROM groups AS g CROSS JOIN LATERAL (
      (SELECT type AS g_type, priority AS g_priority FROM forge.jobs
       WHERE status = 'PENDING' AND type = g.g_type AND priority < g.g_priority
       ORDER BY priority DESC LIMIT 1)
      UNION ALL
      (SELECT type, priority FROM forge.jobs
       WHERE status = 'PENDING' AND type > g.g_type
       ORDER BY type, priority DESC LIMIT 1)
      LIMIT 1) AS n
  )
  SELECT g_type, g_priority FROM groups
) AS p
CROSS JOIN LATERAL (
  SELECT * FROM forge.jobs
  WHERE status = 'PENDING' AND type = p.g_type AND priority = p.g_priority {filters} {after}
  ORDER BY run_at, id
  LIMIT %(limit)s
) AS j
ORDER BY {order}
LIMIT %(limit)s

-- name: group_done
-- The rows jobs_done_priority_idx holds (migration 013).
AND status IN ('DEAD', 'CANCELLED')

-- name: order_newest
id DESC

-- name: after_newest
AND id < %(after_id)s

-- name: order_oldest
id

-- name: after_oldest
AND id > %(after_id)s

-- name: order_run_at
run_at, id

-- name: after_run_at
AND (run_at, id) > (%(after_run_at)s, %(after_id)s)

-- name: order_priority
priority DESC, run_at, id

-- name: after_priority
-- Two directions in one key, which a row comparison cannot say: spelled out, with the bound on
-- priority alone first, so that the index walk starts at the last page's priority.
AND priority <= %(after_priority)s
AND (priority < %(after_priority)s OR (run_at, id) > (%(after_run_at)s, %(after_id)s))

-- name: filter_status
AND status = %(status)s

-- name: filter_type
AND type = %(type)s

-- name: filter_type_prefix
AND starts_with(type, %(type_prefix)s)

-- name: filter_ids
AND id = ANY(%(ids)s::uuid[])

-- name: filter_concurrency_key
AND concurrency_key = %(concurrency_key)s

-- name: filter_idempotency_key
AND idempotency_key = %(idempotency_key)s

-- name: filter_worker_id
AND worker_id = %(worker_id)s

-- name: filter_created_after
AND created_at >= %(created_after)s

-- name: filter_created_before
AND created_at < %(created_before)s

-- name: filter_updated_after
AND updated_at >= %(updated_after)s

-- name: filter_updated_before
AND updated_at < %(updated_before)s

-- name: filter_run_after
-- With status PENDING, in PRIORITY or RUN_AT order, an index range: jobs_pending_idx holds
-- run_at after type and priority.
AND run_at > %(run_after)s

-- name: filter_older_than
-- PurgeDeadJobs: dead (unchanged since) for longer than %(older_than)s seconds.
AND updated_at < now() - %(older_than)s * interval '1 second'

-- name: filter_query
-- Search by key: each arm is an index lookup (jobs_idempotency_key_idx, jobs_key_idx).
AND (idempotency_key = %(query)s OR concurrency_key = %(query)s)

-- name: filter_query_id
-- Search by a text that is also a job id: the primary key too.
AND (id = %(query_id)s OR idempotency_key = %(query)s OR concurrency_key = %(query)s)

-- name: count_matching
-- A bulk call's dry run: how many jobs in its statuses the filter matches now.
SELECT count(*) FROM forge.jobs WHERE status = ANY(%(statuses)s::text[]) {filters};

-- name: cancel_job
-- A running job's attempt ends with the cancel (finished_at); it is no failed attempt.
UPDATE forge.jobs
SET status = 'CANCELLED', last_error = coalesce(%(reason)s, last_error),
    finished_at = CASE WHEN status = 'PROCESSING' THEN now() ELSE finished_at END,
    lease_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s AND status IN ('PENDING', 'PROCESSING', 'DEAD')
RETURNING *;

-- name: retry_dead_job
UPDATE forge.jobs
SET status = 'PENDING', attempts = 0, run_at = now(), updated_at = now()
WHERE id = %(id)s AND status = 'DEAD'
RETURNING *;

-- name: retry_dead_jobs
-- RetryDeadJobs, one batch: up to %(limit)s DEAD jobs matching the filter (the broker composes
-- in the filter_* fragments of the fields set, as for list_jobs), after %(after)s in id order,
-- back to PENDING as retry_dead_job does one. The
-- broker runs it again from the last id it changed until a batch changes none: each batch is its
-- own short transaction, rows another statement holds are skipped rather than waited for, and
-- the keyset walks jobs_by_status_idx once over the whole call, never again over the entries
-- (dead tuples) of the jobs earlier batches moved. The update trigger keeps the counters and
-- wakes the lease streams (NOTIFY) as for any job that becomes runnable. The last id is the
-- greatest as text, which orders as the uuid does (PostgreSQL 16 has no max(uuid)).
WITH changed AS (
  UPDATE forge.jobs
  SET status = 'PENDING', attempts = 0, run_at = now(), updated_at = now()
  WHERE id = ANY(ARRAY(
          SELECT id FROM forge.jobs
          WHERE status = 'DEAD' AND id > %(after)s::uuid
            {filters}
          ORDER BY id
          LIMIT %(limit)s
          FOR UPDATE SKIP LOCKED))
    AND status = 'DEAD'
  RETURNING id
)
SELECT count(*), max(id::text)::uuid FROM changed;

-- name: purge_dead_jobs
-- PurgeDeadJobs, one batch, walked as retry_dead_jobs: DEAD jobs matching the filter (with
-- older_than, filter_older_than among its fragments). The delete trigger keeps the counters.
WITH gone AS (
  DELETE FROM forge.jobs
  WHERE id = ANY(ARRAY(
          SELECT id FROM forge.jobs
          WHERE status = 'DEAD' AND id > %(after)s::uuid
            {filters}
          ORDER BY id
          LIMIT %(limit)s
          FOR UPDATE SKIP LOCKED))
    AND status = 'DEAD'
  RETURNING id
)
SELECT count(*), max(id::text)::uuid FROM gone;

-- name: cancel_jobs
-- CancelJobs, one batch, walked as retry_dead_jobs: jobs matching the filter cancelled as
-- cancel_job does one (PENDING, PROCESSING or DEAD; a running job's lease is dropped, so its
-- worker learns at its next heartbeat and its ack is refused). Also answers the ids of the jobs
-- that were PROCESSING, whose lease streams the broker frees.
WITH chosen AS MATERIALIZED (
  SELECT id, status FROM forge.jobs
  WHERE status IN ('PENDING', 'PROCESSING', 'DEAD') AND id > %(after)s::uuid
    {filters}
  ORDER BY id
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
), changed AS (
  UPDATE forge.jobs
  SET status = 'CANCELLED', last_error = coalesce(%(reason)s, last_error),
      finished_at = CASE WHEN status = 'PROCESSING' THEN now() ELSE finished_at END,
      lease_token = NULL, lease_expires_at = NULL, updated_at = now()
  WHERE id = ANY(ARRAY(SELECT id FROM chosen))
    AND status IN ('PENDING', 'PROCESSING', 'DEAD')
  RETURNING id
)
SELECT count(*), max(c.id::text)::uuid,
       array_agg(c.id::text) FILTER (WHERE chosen.status = 'PROCESSING')
FROM changed c JOIN chosen USING (id);

-- name: delete_finished_jobs
-- Retention: remove COMPLETED and CANCELLED jobs older than the retention period, a batch at a
-- time. Ids are time-ordered (UUIDv7: the first 48 bits are the creation time in ms), and a job
-- finished before the cutoff was created before it, so the index range ends at the cutoff's
-- smallest id: the sweep never reads the finished jobs still within retention, however many
-- there are. (A broker whose clock runs ahead makes ids that look newer: its jobs are deleted
-- that much later, never earlier.)
DELETE FROM forge.jobs
WHERE id = ANY(ARRAY(
        SELECT id FROM forge.jobs
        WHERE status IN ('COMPLETED', 'CANCELLED')
          AND id < encode(substring(int8send((extract(epoch FROM now() - %(retention_seconds)s
                                                      * interval '1 second') * 1000)::bigint)
                                    FROM 3)
                          || '\x00000000000000000000'::bytea, 'hex')::uuid
          AND updated_at < now() - %(retention_seconds)s * interval '1 second'
        ORDER BY id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED));

-- name: try_maintenance_lock
-- One broker at a time folds counters; the others skip the round.
SELECT pg_try_advisory_xact_lock(%(lock_space)s, 1) AS locked;

-- name: fold_job_counts
WITH moved AS (DELETE FROM forge.job_count_deltas RETURNING type, status, n)
INSERT INTO forge.job_counts (type, status, n)
SELECT type, status, sum(n) FROM moved GROUP BY type, status
ON CONFLICT (type, status) DO UPDATE SET n = forge.job_counts.n + excluded.n;

-- name: fold_throughput
WITH moved AS (DELETE FROM forge.throughput_deltas RETURNING minute, type, completed, failed)
INSERT INTO forge.throughput (minute, type, completed, failed)
SELECT minute, type, sum(completed), sum(failed) FROM moved GROUP BY minute, type
ON CONFLICT (minute, type) DO UPDATE
SET completed = forge.throughput.completed + excluded.completed,
    failed = forge.throughput.failed + excluded.failed;

-- name: fold_queue_wait
WITH moved AS (DELETE FROM forge.queue_wait_deltas RETURNING minute, bucket_ms, n)
INSERT INTO forge.queue_wait (minute, bucket_ms, n)
SELECT minute, bucket_ms, sum(n) FROM moved GROUP BY minute, bucket_ms
ON CONFLICT (minute, bucket_ms) DO UPDATE SET n = forge.queue_wait.n + excluded.n;

-- name: prune_rollups
WITH t AS (DELETE FROM forge.throughput WHERE minute < now() - interval '2 hours')
DELETE FROM forge.queue_wait WHERE minute < now() - interval '2 hours';

-- name: drop_empty_counts
DELETE FROM forge.job_counts WHERE n = 0;

-- name: count_jobs
-- Current counts per type and status from the counters, never from the jobs table.
SELECT type, status, sum(n)::bigint AS n
FROM (SELECT type, status, n FROM forge.job_counts
      UNION ALL
      SELECT type, status, n FROM forge.job_count_deltas) AS c
GROUP BY type, status
HAVING sum(n) <> 0;

-- name: pending_groups
-- The (type, priority) groups of the pending jobs of %(types)s, for pending_by_type and
-- next_run_at (composed in at their placeholder). jobs_pending_idx holds a type's jobs by
-- priority, then run_at: each group is found with one index descent (the recursive part), from
-- the lowest priority up, each at the end of its range, where the newest jobs are: the entries
-- a drain has just claimed (dead until vacuumed) lie at the other end.
WITH RECURSIVE groups AS (
  SELECT t.type, (SELECT min(priority) FROM forge.jobs
                  WHERE status = 'PENDING' AND type = t.type) AS priority
  FROM unnest(%(types)s::text[]) AS t(type)
  UNION ALL
  SELECT g.type, (SELECT min(priority) FROM forge.jobs
                  WHERE status = 'PENDING' AND type = g.type AND priority > g.priority)
  FROM groups AS g WHERE g.priority IS NOT NULL
)

-- name: pending_by_type
-- Stats' per-type figures: how many pending jobs are scheduled in the future, and the oldest
-- runnable run_at: short walks within each of pending_groups (a group's first entry is its
-- oldest run_at, the scheduled ones are its last; only the oldest runnable one is looked for at
-- the end where claimed entries lie). A type without pending jobs has no row. The next future
-- run_at is next_run_at's.
{groups}SELECT g.type,
       sum((SELECT count(*) FROM forge.jobs
            WHERE status = 'PENDING' AND type = g.type AND priority = g.priority
              AND run_at > now()))::bigint AS scheduled,
       min((SELECT min(run_at) FROM forge.jobs
            WHERE status = 'PENDING' AND type = g.type AND priority = g.priority
              AND run_at <= now())) AS oldest_run_at
FROM groups AS g
WHERE g.priority IS NOT NULL
GROUP BY g.type;

-- name: next_run_at
-- The earliest future run_at among pending jobs of %(types)s: what a broker whose streams wait
-- for work sleeps until, asked after every round that found too little. In each of
-- pending_groups, one descent to its first job after now(): nothing here walks the entries of
-- jobs just claimed.
{groups}SELECT min((SELECT min(run_at) FROM forge.jobs
            WHERE status = 'PENDING' AND type = g.type AND priority = g.priority
              AND run_at > now()))
FROM groups AS g
WHERE g.priority IS NOT NULL;

-- name: throughput_by_type
-- GetThroughput: attempts per type and minute over the last %(minutes)s minutes, the current
-- one included (folded rollups and the deltas not folded yet).
SELECT type, minute, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed
FROM (SELECT minute, type, completed, failed FROM forge.throughput
      UNION ALL
      SELECT minute, type, completed, failed FROM forge.throughput_deltas) AS t
WHERE minute > date_trunc('minute', now()) - %(minutes)s * interval '1 minute'
GROUP BY type, minute;

-- name: queue_wait_by_minute
-- GetThroughput: the queue-wait histogram of each minute over the last %(minutes)s minutes.
SELECT minute, bucket_ms, sum(n)::bigint AS n
FROM (SELECT minute, bucket_ms, n FROM forge.queue_wait
      UNION ALL
      SELECT minute, bucket_ms, n FROM forge.queue_wait_deltas) AS w
WHERE minute > date_trunc('minute', now()) - %(minutes)s * interval '1 minute'
GROUP BY minute, bucket_ms
ORDER BY minute, bucket_ms;

-- name: throughput_last_hour
SELECT minute, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed
FROM (SELECT minute, completed, failed FROM forge.throughput
      UNION ALL
      SELECT minute, completed, failed FROM forge.throughput_deltas) AS t
WHERE minute > now() - interval '1 hour'
GROUP BY minute;

-- name: queue_wait_histogram
SELECT bucket_ms, sum(n)::bigint AS n
FROM (SELECT minute, bucket_ms, n FROM forge.queue_wait
      UNION ALL
      SELECT minute, bucket_ms, n FROM forge.queue_wait_deltas) AS w
WHERE minute >= date_trunc('minute', now()) - %(window_seconds)s * interval '1 second'
GROUP BY bucket_ms
ORDER BY bucket_ms;

-- name: db_now
SELECT now() AS now;

-- name: register_stream
INSERT INTO forge.workers (stream_id, worker_id, broker_id, types, max_in_flight)
VALUES (%(stream_id)s, %(worker_id)s, %(broker_id)s, %(types)s::text[], %(max_in_flight)s);

-- name: unregister_stream
DELETE FROM forge.workers WHERE stream_id = %(stream_id)s;

-- name: touch_streams
-- A broker's tick: its streams are alive, with these in-flight counts.
UPDATE forge.workers w
SET in_flight = s.in_flight, last_seen = now()
FROM unnest(%(stream_ids)s::uuid[], %(in_flight)s::int[]) AS s(stream_id, in_flight)
WHERE w.stream_id = s.stream_id;

-- name: prune_stale_workers
-- Streams of a broker that stopped refreshing them (it died) are gone.
DELETE FROM forge.workers WHERE last_seen < now() - %(stale_seconds)s * interval '1 second';

-- name: list_workers
SELECT * FROM forge.workers ORDER BY worker_id, connected_at;

-- name: lock_schedule
-- PutSchedule: the schedule as stored, locked until the Put commits, so that two Puts of one
-- name take turns deciding its next fire time (see upsert_schedule).
SELECT * FROM forge.schedules WHERE name = %(name)s FOR UPDATE;

-- name: upsert_schedule
-- Create or replace a schedule whole; next_run_at was decided by the broker from the row
-- lock_schedule read. created_at, last_run_at and last_job_id survive a replacement.
INSERT INTO forge.schedules AS s
  (name, cron, every, timezone, type, payload, priority, max_retries, concurrency_key, paused,
   next_run_at)
VALUES (%(name)s, %(cron)s, %(every)s, %(timezone)s, %(type)s, %(payload)s::text::jsonb,
        %(priority)s, %(max_retries)s, %(concurrency_key)s, %(paused)s, %(next_run_at)s)
ON CONFLICT (name) DO UPDATE
SET cron = excluded.cron, every = excluded.every, timezone = excluded.timezone,
    type = excluded.type, payload = excluded.payload, priority = excluded.priority,
    max_retries = excluded.max_retries, concurrency_key = excluded.concurrency_key,
    paused = excluded.paused,
    next_run_at = excluded.next_run_at, updated_at = now()
RETURNING *;

-- name: get_schedule
SELECT * FROM forge.schedules WHERE name = %(name)s;

-- name: list_schedules
-- By name, keyset-paged: names are never empty, so '' starts at the first.
SELECT * FROM forge.schedules WHERE name > %(after)s ORDER BY name LIMIT %(limit)s;

-- name: delete_schedule
DELETE FROM forge.schedules WHERE name = %(name)s RETURNING name;

-- name: lock_due_schedules
-- The schedules due now, the longest overdue first, locked until fire_schedules (in the same
-- transaction) has enqueued their jobs. SKIP LOCKED shares them out between brokers firing at
-- the same moment, each schedule to exactly one; a row that another broker fired after this
-- statement's snapshot is judged on its new version, no longer due, and skipped.
SELECT name, cron, every, timezone, next_run_at, now() AS now
FROM forge.schedules
WHERE NOT paused AND next_run_at <= now()
ORDER BY next_run_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: fire_schedules
-- One job per schedule lock_due_schedules locked, and each schedule moved on to the next fire
-- time the broker computed, in one statement: the job exists if and only if its schedule moved
-- on. The job's idempotency key (schedule:NAME:FIRE-TIME) is the second guard: a key that
-- is already taken (a schedule deleted and put again, a job enqueued by hand with that key)
-- inserts nothing, and last_job_id names the job that holds it. The jobs' insert trigger wakes
-- the lease streams, as for any enqueue.
WITH fired AS (
  SELECT f.name, f.key, f.next_run_at, s.next_run_at AS fire_at,
         s.type, s.payload, s.priority, s.max_retries, s.concurrency_key
  FROM jsonb_to_recordset(%(fires)s::text::jsonb)
       AS f(name text, key text, next_run_at timestamptz)
  JOIN forge.schedules s ON s.name = f.name
), inserted AS (
  INSERT INTO forge.jobs (type, payload, priority, max_retries, concurrency_key, idempotency_key)
  SELECT type, payload, priority, max_retries, concurrency_key, key FROM fired
  {skip_taken_keys}
  RETURNING id, idempotency_key
)
UPDATE forge.schedules s
SET next_run_at = f.next_run_at,
    last_run_at = f.fire_at,
    last_job_id = coalesce(i.id, (SELECT j.id FROM forge.jobs j WHERE j.idempotency_key = f.key))
FROM fired f LEFT JOIN inserted i ON i.idempotency_key = f.key
WHERE s.name = f.name
RETURNING s.name, i.id IS NOT NULL AS created;

-- name: pause_schedules
-- Schedules whose next fire time cannot be computed any more (a time zone gone from the tz
-- database, an expression a newer cron library reads otherwise): paused, so they stop coming
-- up due, and the broker logs why.
UPDATE forge.schedules SET paused = true, next_run_at = NULL, updated_at = now()
WHERE name = ANY(%(names)s::text[]);

-- name: next_schedule_in
-- Seconds until the earliest fire time of any unpaused schedule, NULL when none: how long the
-- scheduler may sleep.
SELECT extract(epoch FROM min(next_run_at) - now())::float8 FROM forge.schedules
WHERE NOT paused;
