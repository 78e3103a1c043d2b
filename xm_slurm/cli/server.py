"""`xm-slurm server`: run the metadata REST server and manage its bearer tokens.

    xm-slurm server run [--host 127.0.0.1] [--port 8000] [--db URL] [--max-body-mib 16]
    xm-slurm server token create [--name NAME] [--read-only] [--expires-in-days DAYS] [--db URL]
    xm-slurm server token list [--db URL]
    xm-slurm server token revoke ID [--db URL]

`--db` takes a SQLAlchemy URL (e.g. postgresql+psycopg://xm@db.example.org/xm, its password in ~/.pgpass: a
password in the URL is refused) or a file path; by default the SQLite file of the metadata store
(`$XM_SLURM_STATE_DIR/db.sqlite3`). `run` needs the `server` extra (fastapi, uvicorn); PostgreSQL the
`postgres` extra (psycopg 3).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

from xm_slurm.errors import ConfigurationError, XmSlurmError

EPILOG = """\
examples:
  xm-slurm server token create --name alice --db postgresql+psycopg://xm@db.example.org/xm
  xm-slurm server token list --db postgresql+psycopg://xm@db.example.org/xm
  xm-slurm server token revoke 3 --db postgresql+psycopg://xm@db.example.org/xm
  xm-slurm server run --host 127.0.0.1 --port 8000 --db postgresql+psycopg://xm@db.example.org/xm
"""


MAX_EXPIRY_DAYS = 36_500  # 100 years: far enough for "never", and a date Python can still hold
MAX_BODY_MIB = 1024


def _positive_number(option: str, limit: float) -> Callable[[str], float]:
    """An argparse type: a finite number in (0, limit], else a usage error (exit 2) naming the value."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} {text} is not a number") from None
        if not math.isfinite(value) or not 0 < value <= limit:
            raise argparse.ArgumentTypeError(
                f"{option} {text} must be a positive number of at most {limit:,g}"
            )
        return value

    return parse


def _db_url(value: str | None) -> str | None:
    if value is None:
        return value
    if "://" in value:
        import sqlalchemy as sa

        try:
            password = sa.make_url(value).password
        except sa.exc.ArgumentError:
            return value  # the engine words the error
        if password:
            # Never echo the URL: it holds the secret.
            raise ConfigurationError(
                "--db holds a password, which would show in the process list and the shell history: "
                "drop it from the URL and put it in ~/.pgpass (or the file PGPASSFILE names)"
            )
        return value
    from xm_slurm.api.storage import sqlite_url

    return sqlite_url(value)


def _open(value: str | None) -> Any:
    from xm_slurm.api.sql import SqlClient

    return SqlClient.open(_db_url(value))


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from xm_slurm.api.server.app import create_app
    except ImportError as e:
        raise ConfigurationError(
            f"the metadata server needs the `server` extra: pip install 'xmanager-slurm[server]' ({e})"
        ) from e
    client = _open(args.db)
    print(
        f"xm-slurm metadata server on http://{args.host}:{args.port}/api (docs: /docs), database {client!r}",
        file=sys.stderr,
    )
    app = create_app(client, max_body_bytes=int(args.max_body_mib * 2**20))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _token_create(args: argparse.Namespace) -> int:
    import datetime as dt

    from xm_slurm.api.server.tokens import READ_ONLY, READ_WRITE, create_token

    # argparse checked the number (finite, > 0, at most MAX_EXPIRY_DAYS): timedelta cannot overflow.
    expires_in = None if args.expires_in_days is None else dt.timedelta(days=args.expires_in_days)
    scope = READ_ONLY if args.read_only else READ_WRITE
    token = create_token(_open(args.db), args.name, scope=scope, expires_in=expires_in)
    # The token is shown this once (only its hash is stored): stdout alone, so it can be captured.
    print(token)
    print(
        "Store this token now (e.g. in XM_SLURM_REST_API_TOKEN); it cannot be shown again.", file=sys.stderr
    )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from xm_slurm.api.server.tokens import list_tokens

    records = list_tokens(_open(args.db))
    if not records:
        print("no tokens (create one with `xm-slurm server token create`)", file=sys.stderr)
        return 0
    print(f"{'ID':>4}  {'NAME':<20} {'SCOPE':<10} {'CREATED (UTC)':<16}  EXPIRES (UTC)")
    for r in records:
        expires = "never" if r.expires_at is None else f"{r.expires_at:%Y-%m-%d %H:%M}"
        if r.expired():
            expires += " (expired)"
        print(f"{r.id:>4}  {r.name or '-':<20} {r.scope:<10} {r.created_at:%Y-%m-%d %H:%M}  {expires}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from xm_slurm.api.server.tokens import revoke_token

    record = revoke_token(_open(args.db), args.id)
    print(f"revoked token {record.id} ({record.name or 'unnamed'}, {record.scope})", file=sys.stderr)
    return 0


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except XmSlurmError as e:
            from xm_slurm.cli.exit_codes import for_error

            print(f"xm-slurm server: error: {e}", file=sys.stderr)
            return for_error(e)

    return run


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "server",
        help="run the metadata REST server, manage its tokens",
        description="Run the metadata REST server (the `server` extra) and manage its bearer tokens.",
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(dest="server_command", metavar="SUBCOMMAND", required=True)
    db_help = "SQLAlchemy URL or SQLite file (default: $XM_SLURM_STATE_DIR/db.sqlite3)"

    run = commands.add_parser("run", help="serve the metadata API over HTTP")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    run.add_argument("--db", default=None, help=db_help)
    run.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    run.add_argument(
        "--max-body-mib",
        type=_positive_number("--max-body-mib", MAX_BODY_MIB),
        default=16,  # api.server.limits.MAX_BODY_BYTES (not imported here: it needs the server extra)
        metavar="MIB",
        help="largest request body accepted, in MiB (default: 16); larger requests get HTTP 413",
    )
    run.set_defaults(func=_guard(_run))

    token = commands.add_parser("token", help="manage bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", default="", help="a label for the token, e.g. the team member's name")
    create.add_argument("--db", default=None, help=db_help)
    create.add_argument(
        "--read-only", action="store_true", help="the token may read experiments but not change them"
    )
    create.add_argument(
        "--expires-in-days",
        type=_positive_number("--expires-in-days", MAX_EXPIRY_DAYS),
        default=None,
        metavar="DAYS",
        help=f"the token stops working after DAYS days (a positive number, at most {MAX_EXPIRY_DAYS:,})",
    )
    create.set_defaults(func=_guard(_token_create))
    listing = token_commands.add_parser("list", help="list the tokens (never the tokens themselves)")
    listing.add_argument("--db", default=None, help=db_help)
    listing.set_defaults(func=_guard(_token_list))
    revoke = token_commands.add_parser("revoke", help="delete a token: the server refuses it from now on")
    revoke.add_argument("id", type=int, help="the token's id, from `xm-slurm server token list`")
    revoke.add_argument("--db", default=None, help=db_help)
    revoke.set_defaults(func=_guard(_token_revoke))
