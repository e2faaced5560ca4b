"""The `liberator` command."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from liberator import __version__
from liberator.config import AppConfig, load_config, read_config
from liberator.errors import LiberatorError
from liberator.logformat import LOG_FORMATS, LogFormat, default_format, error_line, setup_logging
from liberator.redaction import scrub
from liberator.registry.subjects import subject_name

if TYPE_CHECKING:
    from liberator.registry.client import RegistryClient

log = logging.getLogger("liberator")


def say(line: str, file: TextIO | None = None) -> None:
    """Print an operator-facing line: whatever a driver put in it, no secret is shown."""
    print(scrub(line), file=file or sys.stdout)


def cmd_run(args: argparse.Namespace) -> int:
    from liberator.runtime import Daemon

    config = load_config(args.config)
    daemon = Daemon(config, from_scratch=args.from_scratch, log_format=args.log_format or default_format())
    daemon.install_signal_handlers()
    if getattr(args, "early_signals", None):
        log.info("SIGTERM received: stopping (it came during start-up)")
        daemon.stop.set()
    log.info("liberator %s starting %s with %d source(s)", __version__, config.name, len(config.sources))
    code = daemon.run()
    if daemon.stuck:
        # A thread left inside a driver call must not hold the exit up (interpreter teardown, client
        # libraries' destructors): everything that could be stored is stored.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_check(args: argparse.Namespace) -> int:
    from liberator.checks import check_all

    try:
        config, config_problems = read_config(args.config)
    except LiberatorError as exc:  # not readable as a config at all
        say(f"problem: {exc}")
        return 1
    for config_problem in config_problems:
        say(f"problem: {config_problem}")
    # Then connectivity, of the part of the file that is valid (nothing when its top level is not).
    problems = check_all(config, report=lambda line: say(f"ok: {line}")) if config is not None else []
    for problem in problems:
        say(f"problem: {problem}")
    return 1 if config_problems or problems else 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from liberator.runtime import build_source, registry_client

    config = load_config(args.config)
    naming = config.schema_registry
    out = []
    for source_config in config.sources:
        stop = threading.Event()
        topic_names = None
        if source_config.moves_tables():  # a table moved before writes to its newest versioned topic
            topic_names = functools.partial(_topic_names, config, stop)
        source = build_source(source_config, config.name, stop, registry_client(config), topic_names=topic_names)
        try:
            for stream in source.streams():
                out.append(
                    {
                        "source": source_config.name,
                        "topic": stream.topic,
                        "origin": stream.origin,
                        "subjects": {
                            subject_name(naming.key_subject, stream.topic, stream.key_schema, "key"): stream.key_schema,
                            # None: the application registers the value schema itself (pre-encoded values)
                            (
                                f"{stream.topic}-value"
                                if stream.value_schema is None
                                else subject_name(naming.value_subject, stream.topic, stream.value_schema, "value")
                            ): stream.value_schema,
                        },
                    }
                )
        finally:
            source.close()
    if getattr(args, "check", False):
        return _check_schemas(out, registry_client(config))
    print(json.dumps(out, indent=2))
    return 0


def _topic_names(config: AppConfig, stop: threading.Event) -> set[str]:
    """The broker's topics, for tables moved by on_incompatible: new_topic; none (a warning) without a broker."""
    from liberator.topics import TopicManager, admin_settings

    try:
        return TopicManager(config.kafka, admin_settings(config.kafka)).names(stop)
    except LiberatorError as exc:
        log.warning("cannot list the broker's topics (%s): tables are shown on their configured topics", exc)
        return set()


def _check_schemas(streams: list[dict[str, Any]], registry: RegistryClient) -> int:
    """`schemas --check`: each schema the database would produce now against its subject's latest version,
    under the subject's rule; one line per refusal (table, field, rule), exit 1 if any."""
    refused = checked = 0
    for stream in streams:
        for subject, schema in stream["subjects"].items():
            if schema is None:
                continue  # the application registers its own payload schemas
            checked += 1
            reason = registry.refusal(subject, schema)
            if reason is not None:
                refused += 1
                print(f"source {stream['source']}: table {stream['origin']}: {reason}", file=sys.stderr)
    if refused:
        print(f"{refused} of {checked} schemas would be refused: consumers would break", file=sys.stderr)
        return 1
    print(f"all {checked} schemas are compatible with their subjects' latest versions")
    return 0


def cmd_offsets(args: argparse.Namespace) -> int:
    from liberator.offsets import commands, open_store

    config: AppConfig = load_config(args.config)
    store = open_store(config)
    try:
        if args.offsets_command == "show":
            print(commands.show(store, config))
        elif args.offsets_command == "reset":
            for line in commands.reset(config, store, args.source):
                say(line)
        else:
            offset = commands.set_position(config, store, args.source, args.position)
            say(f"set {offset.source} in {store.describe()}: its next run resumes from {json.dumps(offset.position)}")
        return 0
    finally:
        store.close()


def cmd_pause_resume(args: argparse.Namespace) -> int:
    from liberator.admin import request

    config = load_config(args.config)
    code, answer = request(config, args.source, args.command)
    message = str(answer.get("message", answer))
    if code >= 300:
        raise LiberatorError(message)
    say(message)
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from liberator.admin import request

    config = load_config(args.config)
    if args.status:
        code, answer = request(config, args.source, "snapshots")
        if code >= 300:
            raise LiberatorError(str(answer.get("message", answer)))
        for queued in answer.get("queued", []):
            say(
                f"{queued['id']}  queued   {', '.join(queued['tables'])}"
                + (f"  where {queued['where']}" if queued["where"] else "")
                + ("  (blocking)" if queued.get("blocking") else "")
            )
        for running in answer.get("running", []):
            state = "running" if running["running"] else "waiting"
            where = f"  where {running['where']}" if running["where"] else ""
            of = f" of ~{running['estimate']:,}" if running.get("estimate") else ""
            rate = f", {running['rows_per_second']:,.0f} rows/s" if running.get("rows_per_second") else ""
            eta = f", ETA {running['eta_seconds']:.0f}s" if running.get("eta_seconds") is not None else ""
            done = f"{running['rows']:,}{of} rows so far{rate}{eta}"
            kind = "  (blocking)" if running.get("blocking") else ""
            say(f"{running['id']}  {state:<8} {running['stream']}: {done}{where}{kind}")
        for request_id, reason in answer.get("refused", {}).items():
            say(f"{request_id}  refused  {reason}")
        if not any(answer.get(k) for k in ("queued", "running", "refused")):
            say(f"source {args.source}: no snapshot queued or under way")
        return 0
    if args.cancel:
        code, answer = request(config, args.source, "snapshot-cancel", body={"id": args.cancel})
    else:
        if not args.table:
            raise LiberatorError("say what to snapshot: --table T (repeatable), or --status / --cancel ID")
        body = {"tables": args.table, "where": args.where, "blocking": args.blocking}
        code, answer = request(config, args.source, "snapshot", body=body)
    message = str(answer.get("message", answer))
    if code >= 300:
        raise LiberatorError(message)
    say(message)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from liberator.tail import tail

    tail(
        args.topic,
        args.bootstrap_servers,
        args.registry,
        from_beginning=args.from_beginning,
        max_records=args.max,
        group=args.group,
        idle_timeout=args.idle_timeout,
    )
    return 0


def cmd_registry_serve(args: argparse.Namespace) -> int:
    from liberator.embedded.registry.server import serve

    serve(args.host, args.port, args.data)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from liberator.demo import run_demo

    return run_demo(duration=args.duration, workdir=args.workdir)


def cmd_outbox_ddl(args: argparse.Namespace) -> int:
    from liberator.connectors.outbox.ddl import outbox_ddl

    try:
        print(outbox_ddl(args.dialect, args.table, args.payload, args.cleanup, args.notify), end="")
    except ValueError as exc:
        raise LiberatorError(f"{exc}; drop --notify for {args.dialect}") from None
    return 0


def cmd_config_reference(_args: argparse.Namespace) -> int:
    from liberator.docgen import config_reference

    print(config_reference(), end="")
    return 0


def _logging_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--log-level and --log-format, before the command or after it (`liberator run X --log-format json`)."""
    parser.add_argument(
        "--log-level",
        default="INFO" if defaults else argparse.SUPPRESS,
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None if defaults else argparse.SUPPRESS,
        help="text, or json: one object per line with time, level, logger, source/sink and message "
        "(default: json when stderr is not a terminal, text when it is)",
    )


class _Subcommands:
    """add_parser for every (sub)command, each taking the logging options too."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str) -> None:
        self._sub = parser.add_subparsers(dest=dest, required=True)
        self._common = argparse.ArgumentParser(add_help=False)
        _logging_options(self._common, defaults=False)

    def add_parser(self, name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._sub.add_parser(name, help=help, parents=[self._common])
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liberator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"liberator {__version__}")
    _logging_options(parser, defaults=True)
    sub = _Subcommands(parser, "command")

    p = sub.add_parser("run", help="run the daemon in the foreground until SIGTERM/SIGINT")
    p.add_argument("config")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="sources without a stored position start over (a new snapshot; postgres_wal drops and recreates "
        "its slot) even where the slot or the topics show they ran before",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate the config and connect to everything it names")
    p.add_argument("config")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("schemas", help="print the Avro key/value schemas the config would register")
    p.add_argument("config")
    p.add_argument(
        "--check",
        action="store_true",
        help="check them against the registry's latest versions under each subject's rule (exit 1 on a refusal)",
    )
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("offsets", help="show, reset or set stored source positions")
    offsets = _Subcommands(p, "offsets_command")
    o = offsets.add_parser("show", help="print the stored positions")
    o.add_argument("config")
    o.set_defaults(func=cmd_offsets)
    o = offsets.add_parser("reset", help="forget positions: the next run starts over (a new snapshot)")
    o.add_argument("config")
    o.add_argument("--source", help="only this source (default: all)")
    o.set_defaults(func=cmd_offsets)
    o = offsets.add_parser("set", help="store a position: the source's next run resumes from it")
    o.add_argument("config")
    o.add_argument("--source", required=True, help="the source whose position to set")
    o.add_argument("position", help="the JSON `offsets show` prints for the source (or its position); - reads stdin")
    o.set_defaults(func=cmd_offsets)

    for action, what in (("pause", "stop reading (deliveries and positions go on)"), ("resume", "read again")):
        p = sub.add_parser(action, help=f"tell the running daemon's source to {what}, through its http: server")
        p.add_argument("config")
        p.add_argument("--source", required=True, help="the source to " + action)
        p.set_defaults(func=cmd_pause_resume)

    p = sub.add_parser("snapshot", help="ask the running daemon's source to read tables again (or --status, --cancel)")
    p.add_argument("config")
    p.add_argument("--source", required=True, help="the source whose tables to read again")
    p.add_argument("--table", action="append", help="a captured table (repeatable)")
    p.add_argument("--where", help="an SQL condition: only the rows matching it are read")
    p.add_argument(
        "--blocking",
        action="store_true",
        help="pause the stream and read the tables in one consistent snapshot (postgres_wal, mysql_binlog; "
        "docs/snapshots.md)",
    )
    p.add_argument("--status", action="store_true", help="list the snapshots queued, under way and refused")
    p.add_argument("--cancel", metavar="ID", help="stop the snapshot with this id")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("tail", help="print a topic's records as JSON lines, decoded through the registry")
    p.add_argument("topic")
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--registry", required=True, help="schema registry URL")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--max", type=int, help="stop after this many records")
    p.add_argument("--group", help="consumer group (default: a throwaway one that commits nothing)")
    p.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a record")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("registry", help="the embedded Confluent-compatible schema registry")
    registry = _Subcommands(p, "registry_command")
    r = registry.add_parser("serve", help="serve the registry API, storing schemas in a SQLite file")
    r.add_argument("--port", type=int, default=8081)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--data", required=True, help="SQLite file for the schemas")
    r.set_defaults(func=cmd_registry_serve)

    p = sub.add_parser("demo", help="run an end-to-end demo on embedded defaults (SQLite, broker, registry)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of live changes (default 20)")
    p.add_argument("--workdir", help="where to keep the demo's files (default: a temporary directory)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("outbox", help="the transactional outbox table (see docs/outbox.md)")
    outbox = _Subcommands(p, "outbox_command")
    o = outbox.add_parser("ddl", help="print the default outbox CREATE TABLE with its index")
    o.add_argument("--dialect", required=True, choices=["postgresql", "mysql", "sqlite"])
    o.add_argument("--table", default="outbox", help="table name, or schema.table (default outbox)")
    o.add_argument("--payload", default="json", choices=["json", "avro"], help="payload column type (default json)")
    o.add_argument("--cleanup", default="delete", choices=["delete", "mark"], help="delete rows, or mark published_at")
    o.add_argument("--notify", metavar="CHANNEL", help="PostgreSQL: add a trigger that NOTIFYs CHANNEL on insert")
    o.set_defaults(func=cmd_outbox_ddl)

    p = sub.add_parser("config-reference", help="print the configuration reference (Markdown)")
    p.set_defaults(func=cmd_config_reference)
    return parser


def main(argv: Sequence[str] | None = None, early: tuple[list[int], Any] | None = None) -> int:
    # A SIGTERM during start-up (imports, config, connections) must stop `run` cleanly too, not kill it: it is
    # remembered until the daemon's own handlers are in place (cmd_run). liberator.launch installs the
    # recorder before this module is imported and hands it over as `early`.
    if early is None:
        early_signals: list[int] = []
        previous = signal.signal(signal.SIGTERM, lambda signum, _frame: early_signals.append(signum))
    else:
        early_signals, previous = early
    args = build_parser().parse_args(argv)
    if args.func is not cmd_run:
        signal.signal(signal.SIGTERM, previous)
    args.early_signals = early_signals
    log_format: LogFormat = args.log_format or default_format()
    setup_logging(args.log_level, log_format)
    try:
        code: int = args.func(args)
        return code
    except LiberatorError as exc:
        print(error_line(str(exc), log_format), file=sys.stderr)  # a log collector reads it like any log line
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        # A bug: the traceback goes through the logging handler, which scrubs secrets from it.
        log.exception("unexpected error; this is a bug, please report it with this output")
        return 1


if __name__ == "__main__":
    sys.exit(main())
