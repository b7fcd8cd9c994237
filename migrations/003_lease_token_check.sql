-- A lease token is set exactly while a job is PROCESSING: every way out of PROCESSING clears
-- it. The statements on leases (ack, nack, heartbeat, release) rely on this and match the
-- token alone (see ack_jobs in broker/queries.sql); the constraint keeps it true.
ALTER TABLE forge.jobs ADD CONSTRAINT jobs_lease_token_check
  CHECK ((status = 'PROCESSING') = (lease_token IS NOT NULL));
