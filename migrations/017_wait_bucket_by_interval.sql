-- The queue-wait bucket found by comparing intervals. extract(epoch FROM wait) answers numeric,
-- and the numeric multiply and conversion cost every claimed row some 0.6 us in the claim's
-- counter trigger (1.4 percent of PostgreSQL's time in a drain, profiled); width_bucket over the
-- bounds as intervals compares the wait as it is, bucket for bucket the same (an exact bound
-- still counts toward the next bucket up), at a tenth of that. The answer stays the bound in
-- milliseconds.
-- (There is no 016: a withdrawn 016 may be recorded in databases that ran it.)
CREATE OR REPLACE FUNCTION forge.wait_bucket(wait interval) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ('{1,2,5,10,20,50,100,200,500,1000,2000,5000,10000,30000,60000,300000,900000,3600000,86400000}'::float8[])
         [width_bucket(wait,
                       '{1 ms,2 ms,5 ms,10 ms,20 ms,50 ms,100 ms,200 ms,500 ms,1 s,2 s,5 s,10 s,30 s,1 min,5 min,15 min,1 hour}'::interval[]) + 1]
$$;
