"""The cyclic garbage collector's settings for the broker's and each workerd's process, set once it
is serving.

Every job that passes through the broker or a workerd leaves short-lived container objects
(rows, messages, futures, tuples) that reference counting frees; the cyclic collector still runs
a young collection each time 700 more of them are alive than were freed; every tenth of those
also walks the middle generation, and every so often one walks everything older, grpc's and
protobuf's tables and the imported modules included. Timed in a drain of 100,000 jobs
(docs/benchmarks.md, "Tenth pass"), that was 10 % of the broker's CPU time and 12-15 % of each
workerd's, a full collection taking 20-50 ms. Freezing what startup built takes it out of every
later collection, and a young collection every 7,000 leaves most of the per-job objects already
freed when it runs: the same drain then spent about 1 % (the broker) and 3 % (a workerd)
collecting.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 7_000
"""Objects allocated and not yet freed between young collections (Python's default is 700)."""


def settle() -> None:
    """Collect once, freeze what is left (startup's objects: the collector skips them from now
    on), and collect young objects ten times less often; the older generations' thresholds
    stay as they are."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
