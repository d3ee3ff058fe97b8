"""medperf-server: argv -> Settings; run (cheroot, HTTP or HTTPS; one process or pre-forked workers), user create,
seed, migrate. Nothing else."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from server import auth, store
from server.app import make_app
from server.db import Database, DatabaseError
from server.seed import SeedError, load_components, seed_demo, write_tokens
from server.settings import DEFAULT_DB, DEFAULT_EMAIL_CLAIM, DEFAULT_EMAIL_VERIFIED_CLAIM, Settings
from server.workers import Supervisor, WorkerError, reserve_port
from server.wsgi import TLSFileError, check_tls_files, make_server

DEFAULT_TOKENS_FILE = "medperf-server-tokens.json"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default shown, unless its help says it already or there is none worth saying (off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _Version(argparse.Action):
    """--version: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("medperf-apply")
        except PackageNotFoundError:
            found = "(not installed)"
        sys.stdout.write(f"medperf-server {found}\n")  # as argparse's own version action: stdout
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medperf-server",
        description="MedPerf's v0 registry API (Bottle + cheroot) on SQLite or PostgreSQL.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    parser.add_argument(
        "--db", metavar="URL",
        default=os.environ.get("MEDPERF_SERVER_DB", DEFAULT_DB),
        help=f"SQLite file (or sqlite:///PATH) or postgresql://... URL (env MEDPERF_SERVER_DB; default {DEFAULT_DB})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="what to do (each has its own --help)")

    def command(name: str, text: str, parent=sub) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)

    run = command("run", "serve the API (HTTPS with --certfile and --keyfile)")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on")
    run.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    run.add_argument("--threads", type=int, default=4, metavar="N", help="worker threads")
    run.add_argument("--workers", type=int, default=1, metavar="N", help="processes serving the port (pre-forked, "
                     "SO_REUSEPORT); more than 1 wants PostgreSQL: every rule is held by the database, across processes")
    run.add_argument("--worker-header", action="store_true", help="name the serving process in every response "
                     "(X-Medperf-Worker: <pid>), to see which worker behind a load balancer answered")
    run.add_argument("--certfile", metavar="PEM", help="PEM certificate (chain) to serve HTTPS; with --keyfile "
                     "(default: plain HTTP)")
    run.add_argument("--keyfile", metavar="PEM", help="PEM private key of --certfile")
    run.add_argument("--jwt-public-key-file", metavar="PEM", help="PEM public key verifying RS256 JWTs "
                     "(default: server-issued API tokens only, unless --jwt-jwks-url)")
    run.add_argument("--jwt-jwks-url", metavar="URL", help="JWKS URL of the OIDC provider")
    run.add_argument("--jwt-jwks-ca-file", metavar="PEM", help="PEM of the CA that signed the JWKS URL's certificate "
                     "(a private CA)")
    run.add_argument("--jwt-issuer", metavar="URL", help="the issuer (iss) a JWT must name")
    run.add_argument("--jwt-audience", metavar="AUD", help="the audience (aud) a JWT must name")
    run.add_argument("--jwt-email-claim", default=None, metavar="CLAIM",
                     help=f"the claim holding the user's email (default {DEFAULT_EMAIL_CLAIM})")
    run.add_argument("--jwt-email-verified-claim", default=None, metavar="CLAIM",
                     help="the claim asserting the email is verified: only then is a user known by email alone "
                     f"linked to the token's subject, once (default {DEFAULT_EMAIL_VERIFIED_CLAIM})")
    run.add_argument("--auto-approve-benchmarks-from", default=None, metavar="EMAILS",
                     help="comma-separated owner emails whose benchmarks are approved at once (default: none)")
    run.add_argument("--no-web", action="store_true", help="do not serve the web page at / (nor /login, /logout, /decide)")

    user = command("user", "manage users")
    user_sub = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True, help="create or token")
    create = command("create", "create a user and print a new API token (alone) on stdout", user_sub)
    create.add_argument("--email", required=True, help="the user's email (their identity)")
    create.add_argument("--admin", action="store_true", help="make the user an admin")
    token = command("token", "issue another API token for an existing user (printed alone)", user_sub)
    token.add_argument("--email", required=True, help="the existing user's email")

    seed = command("seed", "create the tutorial's world and write the users' tokens to a file")
    seed.add_argument("--demo", choices=["data"], required=True, help="which world: data (the tutorial's)")
    seed.add_argument("--components", metavar="FILE", help="components.json written by `make images` "
                      "(default: built-in records)")
    seed.add_argument("--tokens-file", default=DEFAULT_TOKENS_FILE, metavar="FILE",
                      help="where the seeded users' tokens are written")
    seed.add_argument("--files-url", metavar="URL", help="where the components file's folder is served over HTTP: its "
                      "file:// URLs are registered as URL/<path> (MedPerf's CLI downloads over http(s) only)")
    seed.add_argument("--archive-model", action="store_true", help="also register the components' image-archive "
                      "model (DockerArchive) as a third model, its association approved")
    seed.add_argument("--second-benchmark", action="store_true", help="also create the benchmark chestxray-external "
                      "(the same containers, approved and operational) that manifests/two-benchmarks.yaml joins")

    command("migrate", "apply pending database migrations")
    return parser


def _settings(args) -> Settings:
    overrides = {"db_url": args.db}
    if args.command == "run":
        overrides["pool_size"] = args.threads + 2
        if args.jwt_public_key_file:
            with open(args.jwt_public_key_file, encoding="utf-8") as f:
                overrides["jwt_public_key"] = f.read()
        overrides.update(jwt_jwks_url=args.jwt_jwks_url, jwt_jwks_ca_file=args.jwt_jwks_ca_file, jwt_issuer=args.jwt_issuer,
                         jwt_audience=args.jwt_audience, jwt_email_claim=args.jwt_email_claim,
                         jwt_email_verified_claim=args.jwt_email_verified_claim)
        if args.auto_approve_benchmarks_from:
            emails = [e.strip() for e in args.auto_approve_benchmarks_from.split(",") if e.strip()]
            overrides["auto_approve_benchmarks_from"] = tuple(emails)
        if args.no_web:
            overrides["web_ui"] = False
    return Settings.from_env(**overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare command: the help, not an error
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a command is required (run, user, seed, migrate)")
    logging.basicConfig(level=logging.INFO, format="medperf-server: %(message)s", stream=sys.stderr)
    try:
        settings = _settings(args)
        return COMMANDS[args.command](args, settings)
    except (DatabaseError, SeedError, TLSFileError, WorkerError, ValueError, OSError) as e:
        print(f"medperf-server: {e}", file=sys.stderr)
        return 1


def cmd_run(args, settings: Settings) -> int:
    if bool(args.certfile) != bool(args.keyfile):
        raise ValueError("--certfile and --keyfile go together (HTTPS needs both)")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    # Requests are short and mostly wait on the database: hand the GIL over sooner than the 5 ms
    # default so a thread whose query returned does not queue behind a busy one (measured by bench/).
    sys.setswitchinterval(0.001)
    if args.workers > 1:
        return _run_workers(args, settings)
    app = make_app(settings)
    server = make_server(app, host=args.host, port=args.port, threads=args.threads, certfile=args.certfile,
                         keyfile=args.keyfile, max_body=settings.max_body_bytes, worker_header=args.worker_header)
    server.prepare()  # binds now: a port in use is an error before "serving" is said
    _say_serving(args, settings, server.bind_addr[1], f"{args.threads} threads")
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _say_serving(args, settings: Settings, port: int, how: str):
    scheme = "https" if args.certfile else "http"
    print(f"medperf-server: serving {scheme}://{args.host}:{port}/api/v0/ ({settings.db_url}, {how})", file=sys.stderr,
          flush=True)


def _run_workers(args, settings: Settings) -> int:
    """Migrate once, then fork the workers (each opens its own connections: none may cross a fork)."""
    if args.certfile:
        check_tls_files(args.certfile, args.keyfile)
    db = Database(settings.db_url, pool_size=1)
    try:
        db.migrate()
    finally:
        db.close()
    reserved, port = reserve_port(args.host, args.port)

    def serve(ready):
        app = make_app(settings, migrate=False)
        server = make_server(app, host=args.host, port=port, threads=args.threads, certfile=args.certfile,
                             keyfile=args.keyfile, max_body=settings.max_body_bytes, reuse_port=True,
                             worker_header=args.worker_header)
        server.prepare()
        ready()
        try:
            server.serve()
        finally:
            server.stop()

    def on_ready(pids):
        _say_serving(args, settings, port, f"{len(pids)} workers of {args.threads} threads, pids "
                     + " ".join(map(str, pids)))

    def log(message):
        print(f"medperf-server: {message}", file=sys.stderr, flush=True)

    try:
        return Supervisor(args.workers, serve, log).run(on_ready)
    finally:
        reserved.close()


def cmd_user(args, settings: Settings) -> int:
    db = Database(settings.db_url, pool_size=1)
    db.migrate()
    try:
        with db.connection() as conn:
            conn.begin_write()
            existing = store.get_user_by_email(conn, args.email)
            if args.user_command == "create":
                if existing is not None:
                    print(f"medperf-server: a user with email {args.email} already exists "
                          "(`user token --email` issues another token)", file=sys.stderr)
                    return 1
                _user, token = auth.create_user_with_token(conn, args.email, args.admin)
            else:
                if existing is None:
                    print(f"medperf-server: no user with email {args.email} (`user create` makes one)",
                          file=sys.stderr)
                    return 1
                token = auth.issue_token(conn, existing["id"])
            conn.commit()
    finally:
        db.close()
    print(token)
    return 0


def cmd_seed(args, settings: Settings) -> int:
    components = load_components(args.components, files_url=args.files_url)
    app = make_app(settings)
    tokens = seed_demo(app, components, archive_model=args.archive_model,
                       second_benchmark=args.second_benchmark)
    app.config["medperf.db"].close()
    print(write_tokens(tokens, args.tokens_file))
    return 0


def cmd_migrate(args, settings: Settings) -> int:
    db = Database(settings.db_url, pool_size=1)
    applied = db.migrate()
    db.close()
    print(f"medperf-server: applied {len(applied)} migration(s) to {settings.db_url}", file=sys.stderr)
    return 0


COMMANDS = {"run": cmd_run, "user": cmd_user, "seed": cmd_seed, "migrate": cmd_migrate}

if __name__ == "__main__":
    sys.exit(main())
