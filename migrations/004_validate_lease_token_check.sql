-- Check the rows that were there before migration 003 (in a transaction of its own: VALIDATE
-- takes a lock that lets the queue keep writing while it scans the table).
ALTER TABLE forge.jobs VALIDATE CONSTRAINT jobs_lease_token_check;
