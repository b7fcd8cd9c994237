-- The queue-wait histogram's bucket for a wait: width_bucket over the bounds instead of
-- unnesting them, a third of the claim's counter cost. A wait falls in the bucket of the
-- first bound above it (an exact bound counts toward the next bucket up).
CREATE OR REPLACE FUNCTION forge.wait_bucket(wait interval) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ('{1,2,5,10,20,50,100,200,500,1000,2000,5000,10000,30000,60000,300000,900000,3600000,86400000}'::float8[])
         [width_bucket(extract(epoch FROM wait) * 1000,
                       '{1,2,5,10,20,50,100,200,500,1000,2000,5000,10000,30000,60000,300000,900000,3600000}'::float8[]) + 1]
$$;
