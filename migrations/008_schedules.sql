-- Periodic schedules (the Schedule message of proto/forge/v1/broker.proto): each row enqueues
-- one job per fire time, made from its job template (type, payload, priority, max_retries).
-- The timing is exactly one of cron (in timezone) and every; the broker computes fire times,
-- PostgreSQL only stores the next one.
CREATE TABLE forge.schedules (
  name         text        PRIMARY KEY,
  cron         text,
  every        interval,
  timezone     text        NOT NULL DEFAULT 'UTC',
  type         text        NOT NULL,
  payload      jsonb       NOT NULL DEFAULT '{}',
  priority     integer     NOT NULL DEFAULT 0,
  max_retries  integer     NOT NULL DEFAULT 3,
  paused       boolean     NOT NULL DEFAULT false,
  -- NULL exactly while paused: a paused schedule has no next fire.
  next_run_at  timestamptz,
  last_run_at  timestamptz,
  last_job_id  uuid,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT schedules_timing_check CHECK ((cron IS NULL) <> (every IS NULL)),
  CONSTRAINT schedules_every_check CHECK (every >= interval '1 second'),
  CONSTRAINT schedules_paused_check CHECK (paused = (next_run_at IS NULL))
);

-- The scheduler's look-up of due schedules, and of the next fire time to sleep until.
CREATE INDEX schedules_due_idx ON forge.schedules (next_run_at) WHERE NOT paused;
