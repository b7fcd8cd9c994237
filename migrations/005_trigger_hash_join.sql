-- jobs_updated joins its transition tables (old_rows, new_rows) by id. PL/pgSQL caches that
-- query's plan per connection, and a plan made while a connection's first updates changed a row
-- or two is a nested loop: reused for a claim or an ack of 1,000 rows, it compares every old
-- row with every new one. (perf on a drain's slow runs: most of PostgreSQL's time in
-- ExecNestLoop over the tuplestores, twice the CPU of the fast runs for the same statements.)
-- Only hash (or merge) joins inside this function, whatever the first statements were.
ALTER FUNCTION forge.jobs_updated() SET enable_nestloop = off;
