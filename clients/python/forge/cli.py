"""``forge``: the command line over the Python client.

    forge enqueue email '{"to": "a@b.c"}' --priority 10
    forge enqueue-many email jobs.jsonl --priority 10    (one JSON object a line; - or none: stdin)
    forge get JOB_ID
    forge list --status DEAD --type email
    forge list --type-prefix email. --since 1h --order oldest | forge list --query KEY_OR_ID
    forge cancel JOB_ID | forge cancel --type TYPE [--dry-run] | forge cancel --all
    forge stats
    forge dlq list | forge dlq retry JOB_ID | forge dlq retry --type TYPE [--dry-run]
    forge dlq retry --all | forge dlq purge --older-than 7d [--type TYPE] [--dry-run]
    forge dlq purge --all
    forge queue list | get TYPE | pause TYPE | resume TYPE
    forge queue set TYPE [--concurrency N] [--key-concurrency N] [--rate N/PERIOD]
    forge schedule put nightly --cron '0 3 * * *' --timezone Europe/Berlin --type report
    forge schedule put ping --every 30s --type ping --payload '{"url": "https://x.y"}'
    forge schedule get NAME | forge schedule list | forge schedule delete NAME
    forge --version
    forge migrate            (with forge-broker installed: DATABASE_URL, or the embedded
                              PostgreSQL in ./.forge)

Installed distributions add commands through the ``forge.commands`` entry-point group: each
entry names a ``Command`` (the broker's adds ``migrate``), so this client imports no server code.

Results are printed as JSON (the proto3 JSON mapping, as the REST API returns them).

Against a broker with API tokens: ``FORGE_TOKEN`` (or ``--token``); over TLS: ``FORGE_CA_FILE``
(or ``--ca-file``), plus ``FORGE_TLS_CLIENT_CERT``/``FORGE_TLS_CLIENT_KEY`` for mutual TLS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from forge.client import Client, ForgeClientError, default_target, payload_json
from forge.security import ChannelSecurity, SecurityConfigError
from forge.v1 import broker_pb2 as pb

COMMANDS = "forge.commands"
MAX_BATCH = 10_000
"""The most jobs one EnqueueBatch call takes (the broker's limit)."""


class Command(Protocol):
    """A subcommand another distribution adds to ``forge`` (entry-point group ``forge.commands``,
    the entry's name is the subcommand's)."""

    help: str

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's arguments."""

    def run(self, args: argparse.Namespace) -> int:
        """Run it; the exit status."""


def _commands() -> dict[str, Command]:
    return {ep.name: ep.load() for ep in entry_points(group=COMMANDS)}


def _print(msg: Message) -> None:
    print(json_format.MessageToJson(msg, indent=2))


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"forge: payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit("forge: payload must be a JSON object")
    try:
        # Python's json reads NaN, Infinity and 1e999, which the client's encoder refuses.
        payload_json(value)
    except ValueError as exc:
        raise SystemExit(f"forge: payload is not valid JSON: {exc}") from None
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit status 2), which the eye finds at once."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _status(text: str) -> str:
    names = [n for n in pb.Job.Status.keys() if n != "STATUS_UNSPECIFIED"]
    if text.upper() not in names:
        raise argparse.ArgumentTypeError(f"unknown status {text!r}; one of {', '.join(names)}")
    return text.upper()


def _run_at(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r}; e.g. 2030-01-01T09:00:00+00:00") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. +00:00")
    return when


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PERIOD = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _every(text: str) -> timedelta:
    """A period such as ``30s``, ``5m``, ``1h30m``, ``1.5s`` or ``2d``; a bare number is seconds.
    Whether it is long enough is the broker's to say."""
    spec = text.strip().lower()
    if re.fullmatch(_NUMBER, spec):
        spec += "s"
    if not spec or _PERIOD.sub("", spec):
        raise argparse.ArgumentTypeError(f"not a period: {text!r}; e.g. 30s, 5m, 1h30m, 2d")
    try:
        return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u]
                                     for n, u in _PERIOD.findall(spec)))
    except OverflowError:
        raise argparse.ArgumentTypeError(f"period too long: {text!r}") from None


def _rate(text: str) -> tuple[int, float]:
    """``N/PERIOD`` (``20/s``, ``100/1m``, ``5/500ms``) as (limit, seconds); ``0`` or ``none``
    removes the rate limit."""
    if text.strip().lower() in ("0", "none"):
        return 0, 0.0
    count, _, period = text.partition("/")
    period = period.strip()
    try:
        if not count.strip().isdigit() or not period:
            raise argparse.ArgumentTypeError
        # "20/s" means 20 per one second.
        seconds = _every(period if period[0].isdigit() or period[0] == "." else "1" + period)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r}; N/PERIOD such as 20/s, 100/1m or 5/500ms (0: none)") from None
    return int(count), seconds.total_seconds()


def _when(text: str) -> datetime:
    """A time: ISO 8601 with an offset, or a period such as 1h or 7d, meaning that long ago."""
    try:
        return datetime.now(UTC) - _every(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return _run_at(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r}; an ISO 8601 time with offset (2030-01-01T09:00:00+00:00) "
            "or how long ago (30m, 12h, 7d)") from None


_ORDERS = [n for n in pb.ListJobsRequest.Order.keys() if n != "ORDER_UNSPECIFIED"]


def _order(text: str) -> str:
    if text.upper() not in _ORDERS:
        raise argparse.ArgumentTypeError(f"unknown order {text!r}; one of "
                                         f"{', '.join(o.lower() for o in _ORDERS)}")
    return text.upper()


def _version() -> str:
    try:
        return version("forge-client")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


_DRY_RUN = "change nothing: print how many jobs the call would change now"


def _parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    p = _Parser(prog="forge", description="Forge job queue command line.")
    p.add_argument("--version", action="version", version=f"forge {_version()}")
    p.add_argument("--broker", default=None, help=f"broker address (default: $FORGE_BROKER or "
                   f"{default_target()})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    p.add_argument("--token", default=None,
                   help="API token sent as a bearer token (default: $FORGE_TOKEN; prefer the "
                        "variable: a flag shows in the process list)")
    p.add_argument("--ca-file", default=None,
                   help="CA certificate (PEM) to dial the broker over TLS (default: $FORGE_CA_FILE)")
    p.add_argument("--tls-client-cert", default=None,
                   help="client certificate for mutual TLS (default: $FORGE_TLS_CLIENT_CERT)")
    p.add_argument("--tls-client-key", default=None,
                   help="client certificate's key (default: $FORGE_TLS_CLIENT_KEY)")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("enqueue", help="enqueue a job")
    e.add_argument("type")
    e.add_argument("payload", nargs="?", default="{}", help="JSON object")
    e.add_argument("--priority", type=int)
    e.add_argument("--max-retries", type=int)
    e.add_argument("--run-at", type=_run_at,
                   help="ISO 8601 time with offset, e.g. 2030-01-01T09:00:00+00:00")
    e.add_argument("--idempotency-key")
    e.add_argument("--concurrency-key", help="jobs of one key run at most the queue's "
                                             "key concurrency at once")

    m = sub.add_parser("enqueue-many", help="enqueue a job of TYPE for each line of a JSON Lines "
                                            "file, in batches")
    m.add_argument("type")
    m.add_argument("file", nargs="?", default="-",
                   help="one JSON object (a payload) per line; blank lines are skipped "
                        "(default -: standard input)")
    m.add_argument("--batch", type=_batch_size, default=1000,
                   help="jobs per EnqueueBatch call, each all or none (1 to 10000; default 1000)")
    m.add_argument("--priority", type=int)
    m.add_argument("--max-retries", type=int)
    m.add_argument("--run-at", type=_run_at,
                   help="ISO 8601 time with offset, e.g. 2030-01-01T09:00:00+00:00")
    m.add_argument("--concurrency-key")

    g = sub.add_parser("get", help="show a job")
    g.add_argument("id")

    ls = sub.add_parser("list", help="list jobs, newest first (or --order)")
    ls.add_argument("--status", type=_status, help="PENDING, PROCESSING, DEAD... (any case)")
    ls.add_argument("--type")
    ls.add_argument("--type-prefix", help="only types starting with this, e.g. email.")
    ls.add_argument("--key", help="only jobs with this concurrency key")
    ls.add_argument("--idempotency-key", help="only the job with this idempotency key")
    ls.add_argument("--worker", help="only jobs whose current or last attempt this worker leased")
    ls.add_argument("--since", type=_when,
                    help="only jobs created since: an ISO 8601 time with offset, or how long "
                         "ago (30m, 12h, 7d)")
    ls.add_argument("--until", type=_when, help="only jobs created before this (as --since)")
    ls.add_argument("--run-after", type=_when,
                    help="only jobs whose run_at is later (as --since; 0 is now: with "
                         "--status pending, the scheduled jobs)")
    ls.add_argument("--order", type=_order, help="newest (default), oldest, run_at (soonest "
                                                 "first) or priority (highest first); run_at "
                                                 "and priority need a --status other than "
                                                 "completed")
    ls.add_argument("--query", help="search: a job id, idempotency key or concurrency key")
    ls.add_argument("--page-size", type=int, default=0)
    ls.add_argument("--page-token", default="",
                    help="from the previous page, with the same filters and order")

    c = sub.add_parser("cancel", help="cancel a job, or every unfinished job of a type")
    c.add_argument("id", nargs="?")
    c.add_argument("--type", help="cancel every PENDING, PROCESSING or DEAD job of this type")
    c.add_argument("--all", action="store_true", help="cancel every unfinished job")
    c.add_argument("--reason", default="")
    c.add_argument("--dry-run", action="store_true", help=_DRY_RUN)

    sub.add_parser("stats", help="queue statistics")

    d = sub.add_parser("dlq", help="the dead-letter queue")
    dsub = d.add_subparsers(dest="dlq_command", required=True)
    dl = dsub.add_parser("list", help="list dead jobs")
    dl.add_argument("--type")
    dl.add_argument("--page-size", type=int, default=0)
    dl.add_argument("--page-token", default="")
    dr = dsub.add_parser("retry", help="send a dead job, or every one of a type, back to the "
                                       "queue")
    dr.add_argument("id", nargs="?")
    dr.add_argument("--type", help="retry every dead job of this type")
    dr.add_argument("--all", action="store_true", help="retry every dead job")
    dr.add_argument("--dry-run", action="store_true", help=_DRY_RUN)
    dp = dsub.add_parser("purge", help="delete dead jobs")
    dp.add_argument("--older-than", type=_every,
                    help="only jobs dead for longer than this: 30m, 12h, 7d")
    dp.add_argument("--type", help="only dead jobs of this type")
    dp.add_argument("--all", action="store_true", help="required when no other filter is given")
    dp.add_argument("--dry-run", action="store_true", help=_DRY_RUN)

    qp = sub.add_parser("queue", help="queues: per-type pause and limits")
    qsub = qp.add_subparsers(dest="queue_command", required=True)
    qsub.add_parser("list", help="every type with jobs or settings")
    for name, text in (("get", "show a type's queue"), ("pause", "stop leasing a type"),
                       ("resume", "lease a paused type again")):
        qsub.add_parser(name, help=text).add_argument("type")
    qs = qsub.add_parser("set", help="change a type's limits (0: unlimited); others stay")
    qs.add_argument("type")
    qs.add_argument("--concurrency", type=int, help="jobs of the type running at once, fleet-wide")
    qs.add_argument("--key-concurrency", type=int,
                    help="jobs of one concurrency key running at once")
    qs.add_argument("--rate", type=_rate, help="starts per period: N/PERIOD, e.g. 20/s, "
                                                "100/1m, 5/500ms; 0 for none")
    s = sub.add_parser("schedule", help="periodic schedules: a job enqueued at each fire time")
    ssub = s.add_subparsers(dest="schedule_command", required=True)
    sp = ssub.add_parser("put", help="create or replace a schedule")
    sp.add_argument("name")
    timing = sp.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help="five-field cron expression, or @hourly, @daily, "
                                       "@weekly, @monthly, @yearly")
    timing.add_argument("--every", type=_every, help="fixed period: 30s, 5m, 1h30m, 2d")
    sp.add_argument("--timezone", default="", help="IANA zone the cron expression is read in "
                                                   "(default UTC)")
    sp.add_argument("--type", required=True, help="job type of each fire")
    sp.add_argument("--payload", default="{}", help="JSON object, the payload of each job")
    sp.add_argument("--priority", type=int)
    sp.add_argument("--max-retries", type=int)
    sp.add_argument("--paused", action="store_true", help="store it without firing")
    for verb, what in (("get", "show a schedule"), ("delete", "delete a schedule")):
        ssub.add_parser(verb, help=what).add_argument("name")
    sl = ssub.add_parser("list", help="list schedules by name")
    sl.add_argument("--page-size", type=int, default=0)
    sl.add_argument("--page-token", default="")

    for name, command in sorted(commands.items()):
        command.configure(sub.add_parser(name, help=command.help))
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`forge list | head`): stop quietly. Point stdout at /dev/null so
        # the interpreter's final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    commands = _commands()
    args = _parser(commands).parse_args(argv)
    if args.command in commands:
        return commands[args.command].run(args)
    try:
        security = ChannelSecurity.from_env(token=args.token, ca_file=args.ca_file,
                                            client_cert=args.tls_client_cert,
                                            client_key=args.tls_client_key)
        client = Client(args.broker, timeout=args.timeout, security=security)
    except SecurityConfigError as exc:
        print(f"forge: {exc}", file=sys.stderr)
        return 2
    try:
        with client:
            if args.command == "enqueue":
                _print(client.enqueue(args.type, _payload(args.payload), priority=args.priority,
                                      max_retries=args.max_retries, run_at=args.run_at,
                                      idempotency_key=args.idempotency_key,
                                      concurrency_key=args.concurrency_key))
            elif args.command == "enqueue-many":
                return _enqueue_many(client, args, _lines(args.file), security)
            elif args.command == "get":
                _print(client.get(args.id))
            elif args.command == "list":
                _print(client.list(
                    status=args.status, type=args.type, page_size=args.page_size,
                    page_token=args.page_token, type_prefix=args.type_prefix,
                    concurrency_key=args.key, idempotency_key=args.idempotency_key,
                    worker_id=args.worker, created_after=args.since, created_before=args.until,
                    order=args.order, query=args.query, run_after=args.run_after))
            elif args.command == "cancel":
                _print(_cancel(client, args))
            elif args.command == "stats":
                _print(client.stats())
            elif args.command == "queue":
                _print(_queue_command(client, args))
            elif args.command == "schedule":
                _schedule(client, args)
            elif args.dlq_command == "list":
                _print(client.dead(type=args.type, page_size=args.page_size,
                                   page_token=args.page_token))
            elif args.dlq_command == "purge":
                _print(client.purge_dead_jobs(type=args.type, older_than=args.older_than,
                                              all=args.all, dry_run=args.dry_run))
            else:
                _print(_retry(client, args))
    except ForgeClientError as exc:
        print(f"forge: {_explain(exc, client.target, security)}", file=sys.stderr)
        return 1
    return 0


def _batch_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"not a batch size: {text!r}; 1 to {MAX_BATCH}")
    return int(text)


def _lines(path: str) -> list[tuple[int, dict[str, Any]]]:
    """Each payload of a JSON Lines file (``-``: standard input) with its line number, all read
    and checked before anything is sent: a bad line enqueues nothing."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"forge: cannot read {path}: {exc}") from None
    payloads = []
    # Lines end at "\n" alone (a "\r" before it is JSON whitespace): str.splitlines would also
    # split inside a string holding U+2028 or another character it counts as a line break.
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                payloads.append((number, _payload(line)))
            except SystemExit as exc:
                raise SystemExit(f"forge: line {number}: {str(exc.code).removeprefix('forge: ')}"
                                 ) from None
    if not payloads:
        raise SystemExit(f"forge: no payload in {'standard input' if path == '-' else path}")
    return payloads


_ENTRY = re.compile(r"payloads_json\[(\d+)\]")


def _by_line(message: str, numbers: list[int]) -> str:
    """The broker's message with each entry it names (``payloads_json[i]``) as its line."""
    def line(m: re.Match[str]) -> str:
        i = int(m[1])
        return f"line {numbers[i]}" if i < len(numbers) else m[0]
    return _ENTRY.sub(line, message)


def _enqueue_many(client: Client, args: argparse.Namespace,
                  lines: list[tuple[int, dict[str, Any]]], security: ChannelSecurity) -> int:
    """EnqueueBatch calls of ``--batch`` lines each, in order; prints the ids of the jobs
    enqueued (EnqueueBatchResponse's JSON). A refused batch stops the run: the batches before it
    stay enqueued, and the error names the line (for the broker's ``payloads_json[i]``)."""
    done = pb.EnqueueBatchResponse()
    for start in range(0, len(lines), args.batch):
        part = lines[start:start + args.batch]
        try:
            done.ids.extend(client.enqueue_many(
                args.type, [payload for _, payload in part], ids_only=True,
                priority=args.priority, max_retries=args.max_retries, run_at=args.run_at,
                concurrency_key=args.concurrency_key))
        except ForgeClientError as exc:
            why = _by_line(_explain(exc, client.target, security), [n for n, _ in part])
            before = ""
            if done.ids:
                _print(done)
                before = f"; the {len(done.ids)} jobs before it were (their ids are printed)"
            print(f"forge: {why}; nothing from line {part[0][0]} on was enqueued{before}",
                  file=sys.stderr)
            return 1
        done.created = len(done.ids)
    _print(done)
    return 0


def _one_or_many(args: argparse.Namespace, command: str) -> bool:
    """Whether a cancel or a retry names one job (JOB_ID) rather than a filter (--type, --all);
    exactly one of the two, or a usage error (exit status 2)."""
    if (args.id is None) == (args.type is None and not args.all):
        print(f"forge {command}: give JOB_ID, or --type or --all, not both "
              f"(see forge {command} --help)", file=sys.stderr)
        raise SystemExit(2)
    if args.id is not None and args.dry_run:
        print(f"forge {command}: --dry-run counts what --type or --all would change; not with "
              "JOB_ID", file=sys.stderr)
        raise SystemExit(2)
    return args.id is not None


def _cancel(client: Client, args: argparse.Namespace) -> Message:
    if _one_or_many(args, "cancel"):
        return client.cancel(args.id, args.reason)
    return client.cancel_jobs(type=args.type, all=args.all, reason=args.reason,
                              dry_run=args.dry_run)


def _retry(client: Client, args: argparse.Namespace) -> Message:
    if _one_or_many(args, "dlq retry"):
        return client.retry_dead(args.id)
    return client.retry_dead_jobs(type=args.type, dry_run=args.dry_run)


def _queue_command(client: Client, args: argparse.Namespace) -> Message:
    if args.queue_command == "list":
        return client.list_queues()
    if args.queue_command == "get":
        return client.get_queue(args.type)
    if args.queue_command == "pause":
        return client.pause_queue(args.type)
    if args.queue_command == "resume":
        return client.resume_queue(args.type)
    return client.update_queue(args.type, concurrency_limit=args.concurrency,
                               key_concurrency_limit=args.key_concurrency, rate=args.rate)


def _schedule(client: Client, args: argparse.Namespace) -> None:
    if args.schedule_command == "put":
        _print(client.put_schedule(args.name, args.type, _payload(args.payload), cron=args.cron,
                                   every=args.every, timezone=args.timezone,
                                   priority=args.priority, max_retries=args.max_retries,
                                   paused=args.paused))
    elif args.schedule_command == "get":
        _print(client.get_schedule(args.name))
    elif args.schedule_command == "list":
        _print(client.list_schedules(page_size=args.page_size, page_token=args.page_token))
    else:
        client.delete_schedule(args.name)


def _explain(exc: ForgeClientError, target: str, security: ChannelSecurity) -> str:
    # UNAVAILABLE comes from gRPC failing to reach the broker, or from a broker whose database
    # is down: whether its health service answers at all tells the two apart.
    if exc.code == grpc.StatusCode.UNAVAILABLE and not _answers(target, security):
        return f"cannot reach the broker at {target} (set FORGE_BROKER or --broker): {exc.details}"
    return str(exc)


def _answers(target: str, security: ChannelSecurity) -> bool:
    """Whether a broker answers at ``target``, serving or not (health needs no token)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with security.channel(target) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError as exc:
            return exc.code() != grpc.StatusCode.UNAVAILABLE
    return True


if __name__ == "__main__":
    sys.exit(main())
