-- Hand-off: a job enqueued while a worker waits idle for its type is inserted already leased
-- (PROCESSING, attempt 1; see insert_jobs). Its start is recorded in the queue-wait histogram
-- as a claim's is (jobs_updated), with no wait; it sends no NOTIFY, since nothing is left for
-- another broker to claim.
CREATE OR REPLACE FUNCTION forge.jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO forge.job_count_deltas (type, status, n)
  SELECT type, status, count(*) FROM new_rows GROUP BY type, status;
  IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'PENDING') THEN
    -- One wake-up per statement, not per row; delivered at commit.
    PERFORM pg_notify('forge_jobs', '');
  END IF;
  IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'PROCESSING') THEN
    INSERT INTO forge.queue_wait_deltas (minute, bucket_ms, n)
    SELECT date_trunc('minute', now()), forge.wait_bucket(interval '0'), count(*)
    FROM new_rows
    WHERE status = 'PROCESSING';
  END IF;
  RETURN NULL;
END $$;
