-- A lease token is set exactly while a job is PROCESSING: every way out of PROCESSING clears
-- it. The statements on leases (ack, nack, heartbeat, release) rely on this and match the
-- token alone (see ack_jobs in broker/queries.sql); the constraint keeps it true. Added NOT
-- VALID (new and updated rows are checked from now on; the table lock is momentary), and
-- validated over the existing rows by the next migration, which does not block writers.
ALTER TABLE forge.jobs ADD CONSTRAINT jobs_lease_token_check
  CHECK ((status = 'PROCESSING') = (lease_token IS NOT NULL)) NOT VALID;
