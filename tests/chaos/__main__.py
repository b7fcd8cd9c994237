"""``python -m tests.chaos``: one chaos run; prints its figures and exits 1 on any violation."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.chaos.run import Settings, run, summary


def main(argv: Sequence[str] | None = None) -> int:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    p.add_argument("--jobs", type=int, default=d.jobs, help="jobs to enqueue (default %(default)s)")
    p.add_argument("--brokers", type=int, default=d.brokers, help="broker processes (default %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="workerd processes, split between the brokers (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    p.add_argument("--concurrency", type=int, default=d.concurrency,
                   help="each worker's --concurrency (default %(default)s)")
    p.add_argument("--job-ms", type=float, default=d.job_ms,
                   help="milliseconds each job works (default %(default)s)")
    p.add_argument("--pg-stop-seconds", type=float, default=d.pg_stop_seconds,
                   help="how long PostgreSQL stays stopped (default %(default)s)")
    p.add_argument("--max-kills", type=int, default=None, help="at most this many SIGKILLs")
    p.add_argument("--broker-kills", type=int, default=d.broker_kills,
                   help="brokers SIGKILLed for good mid-drain; workers then dial every broker "
                        "(default %(default)s)")
    p.add_argument("--pooler", action="store_true",
                   help="brokers reach PostgreSQL through PgBouncer in transaction mode")
    p.add_argument("--lease-seconds", type=int, default=None,
                   help="workers' lease (default: three times the stop plus 12 s)")
    p.add_argument("--max-xact-age", type=float, default=d.max_xact_age,
                   help="longest acceptable open transaction, seconds (default %(default)s)")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="keep the processes' logs here (default: a temporary folder, kept on failure)")
    args = p.parse_args(argv)
    for name in ("jobs", "brokers", "workers", "concurrency"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    settings = Settings(jobs=args.jobs, brokers=args.brokers, workers=args.workers, seed=args.seed,
                        concurrency=args.concurrency, job_ms=args.job_ms,
                        pg_stop_seconds=args.pg_stop_seconds, max_kills=args.max_kills,
                        broker_kills=args.broker_kills, pooler=args.pooler,
                        lease_seconds=args.lease_seconds, max_xact_age=args.max_xact_age,
                        log_dir=args.log_dir)
    result = run(settings)
    print(summary(result), flush=True)
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
