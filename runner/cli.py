"""argv -> per-command options (runner/arguments.py); builds the clients; dispatches to the command; maps errors
to exit statuses."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner import privacy
from runner.arguments import PROG, build_parser, parse
from runner.clients.retry import DEADLINE_S
from runner.clients.slurm import SlurmRunner
from runner.console import Console
from runner.decide import Decision, decide
from runner.errors import ExitStatus, Interrupted, MedperfApplyError
from runner.hashing import folders_hash
from runner.inspect import InspectOptions, inspect
from runner.login import LoginOptions, login_command
from runner.model import ServerSpec
from runner.reconcile import Clients, reconcile
from runner.report.plan import error_document
from runner.signals import Interruption, handled
from runner.state import StateDir

__all__ = ["PROG", "before_send_for", "build_parser", "main", "parse", "real_clients"]


def before_send_for(server: ServerSpec, state: StateDir, interruption: Interruption
                    ) -> Callable[[str, str, Mapping[str, Any]], None]:
    """What every body passes before it is sent: after an interrupt only an "interrupted" status report; the
    privacy allowlist; then the ledger (written before the send)."""

    def before_send(method: str, path: str, body: Mapping[str, Any]) -> None:
        if interruption.is_set() and not privacy.is_interrupted_report(method, path, body):
            raise Interrupted(f"{method} /{privacy.normalize(path)} not sent: the run was interrupted")
        privacy.check_body(method, path, body)
        state.ledger.record(server.url, method, path, body)

    return before_send


def real_clients(environ: Mapping[str, str], *, request_timeout: float = DEADLINE_S, task_timeout: float | None = None,
                 task_idle_timeout: float | None = None, interruption: Interruption | None = None,
                 ca_file: str | None = None, sleep: Callable[[float], None] = time.sleep):
    """The real edges: the registry client (privacy check + ledger before every body), Docker, the hash.

    `sleep` takes the pauses: the registry client's back-off between retries and apply --wait's polls."""
    interruption = interruption or Interruption()

    def make_api(server, state):
        from runner.clients.api import ApiClient  # requests is imported only when a command talks to a server
        from runner.clients.oidc import token_source

        trust = Path(ca_file).expanduser().absolute() if ca_file else server.ca_file
        # server.oidc: the provider is reached with the registry's trust (server.ca_file may bundle both CAs)
        tokens = token_source(server, environ, ca_file=trust, timeout=min(30.0, request_timeout))
        return ApiClient(server.url, tokens, before_send=before_send_for(server, state, interruption),
                         deadline=request_timeout, interrupted=interruption.is_set, sleep=sleep, ca_file=trust)

    def make_runner(state, runtime=None):
        if runtime is not None and runtime.executor == "slurm":
            return SlurmRunner(state.slurm_jobs, state.containers, runtime, environ=environ, timeout=task_timeout,
                               inactivity_timeout=task_idle_timeout, interrupted=interruption.is_set)
        from runner.clients.containers import DockerRunner  # docker is imported only when a container runs

        return DockerRunner(state.containers, timeout=task_timeout, inactivity_timeout=task_idle_timeout,
                            gpus=runtime.gpus if runtime else None, shm_size=runtime.shm_size if runtime else None)

    return Clients(state=StateDir, api=make_api, runner=make_runner, hasher=folders_hash, environ=environ,
                   interruption=interruption, sleep=sleep)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
         stdin: TextIO | None = None, environ: Mapping[str, str] | None = None, clients=None) -> int:
    """Run medperf-apply; return the exit code (the console script exits with it)."""
    # SIGINT and SIGTERM (CI cancelling a job, a service manager stopping it) take one path: the running
    # containers are stopped and removed, nothing more is sent but MedPerf's "interrupted" reports, the journal
    # says so, exit 130.
    interruption = clients.interruption if clients is not None else Interruption()
    with handled(interruption):
        return _main(argv, stdout=stdout, stderr=stderr, stdin=stdin, environ=environ, clients=clients,
                     interruption=interruption)


def _main(argv, *, stdout, stderr, stdin, environ, clients, interruption: Interruption) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stdin = stdin if stdin is not None else sys.stdin
    environ = dict(os.environ) if environ is None else dict(environ)
    debug = "--debug" in argv
    output = "json" if any(a == "--output=json" for a in argv) or \
        any(a == "--output" and i + 1 < len(argv) and argv[i + 1] == "json" for i, a in enumerate(argv)) else "text"
    console = Console(stdout, stderr, stdin, environ=environ, output=output)
    try:
        return _command(argv, console, environ=environ, clients=clients, interruption=interruption, debug=debug)
    finally:
        console.close()


def _command(argv, console: Console, *, environ, clients, interruption: Interruption, debug: bool) -> int:
    stdout, stderr = console.stdout, console.stderr
    try:
        try:
            with contextlib.redirect_stdout(stdout):  # --help and --version print to this command's stdout
                opts, debug = parse(argv)
        except SystemExit as e:  # --help, --version, a bare command
            return int(e.code or 0) if isinstance(e.code, int) else ExitStatus.USAGE
        if isinstance(opts, LoginOptions):
            return login_command(opts, environ, console)
        if isinstance(opts, Decision):
            return decide(opts, clients or real_clients(environ, request_timeout=opts.request_timeout,
                                                        interruption=interruption, ca_file=opts.ca_file), console)
        if isinstance(opts, InspectOptions):
            return inspect(opts, clients or real_clients(environ, request_timeout=opts.request_timeout,
                                                         interruption=interruption, ca_file=opts.ca_file), console)
        return reconcile(opts, clients or real_clients(environ, request_timeout=opts.request_timeout,
                                                        task_timeout=opts.task_timeout,
                                                        task_idle_timeout=opts.task_idle_timeout,
                                                        interruption=interruption, ca_file=opts.ca_file), console)
    except KeyboardInterrupt as e:
        interruption.set()
        console.close()
        what = e.message if isinstance(e, Interrupted) else "interrupted"
        console.error(f"{what}; nothing half-done is lost: run again to resume")
        return _fail(console, what, ExitStatus.INTERRUPTED)
    except MedperfApplyError as e:
        console.close()  # no bar stays under the error (nor under a traceback, written straight to stderr)
        if debug:
            traceback.print_exc(file=stderr)
        console.error(str(e))
        return _fail(console, str(e), e.exit_code, where=e.where)
    except Exception as e:  # a bug: say so plainly; the traceback only with --debug
        console.close()
        if debug:
            traceback.print_exc(file=stderr)
        console.error(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return _fail(console, f"internal error: {e}", ExitStatus.ERROR)


def _fail(console, message: str, code: int, where: str | None = None) -> int:
    if console.json_mode:
        console.document(error_document(message, code, where=where))
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
