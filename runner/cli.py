"""argv -> per-command options; builds the clients; dispatches to the command; maps errors to exit statuses."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner import privacy
from runner.clients.retry import DEADLINE_S
from runner.clients.slurm import SlurmRunner
from runner.console import Console
from runner.container_spec import check_shm_size, normalize_gpus
from runner.decide import Decision, decide, parse_decision
from runner.errors import ContainerSpecError, ExitStatus, Interrupted, MedperfApplyError, UsageError
from runner.hashing import folders_hash
from runner.inspect import InspectOptions, inspect
from runner.load import load_values
from runner.login import LoginOptions, login_command
from runner.model import ServerSpec
from runner.reconcile import Clients, Options, reconcile
from runner.report.plan import error_document
from runner.signals import Interruption, handled
from runner.state import StateDir

PROG = "medperf-apply"
COMMANDS = ("plan", "apply", "validate", "status", "results", "association", "login", "logout")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, which is our 'plan found changes': raise UsageError (64) instead."""

    def error(self, message: str):
        raise UsageError(message, hint=f"see `{PROG} {self._cmd()}--help`")

    def _cmd(self) -> str:
        parts = self.prog.split()
        return (parts[1] + " ") if len(parts) > 1 else ""


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 30s, 10m, 6h)") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line, declared in one place (long, but a list of declarations: tests/docs reads it)."""
    common = _Parser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--var", action="append", default=[], metavar="K=V", help="a template variable (vars.K)")
    g.add_argument("--values", action="append", default=[], metavar="FILE", help="YAML file of template variables")
    g.add_argument("--output", choices=("text", "json"), default="text",
                   help="json: only a versioned JSON document on stdout, human lines on stderr, never prompts")
    g.add_argument("--event-log", metavar="FILE", help="append one JSON event per line to FILE")
    g.add_argument("--target", action="append", default=[], metavar="dataset/NAME[/benchmark/B]",
                   help="only this dataset (and its prerequisites); an error if it matches nothing")
    g.add_argument("--state-dir", metavar="DIR", help="local state dir (default $MEDPERF_APPLY_HOME or "
                   "~/.medperf_apply/<server host_port>/)")
    g.add_argument("--request-timeout", type=_seconds, default=DEADLINE_S, metavar="DURATION",
                   help=f"the longest one request to the registry may take, answer included (default {DEADLINE_S:g}s)")
    g.add_argument("--ca-file", metavar="PEM", help="the certificate authority of an https registry with a private "
                   "CA (overrides server.ca_file; default: the system's trust store)")
    g.add_argument("--lock-timeout", type=_seconds, default=0.0, metavar="S",
                   help="wait up to S seconds for another run holding the state dir's lock")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    g.add_argument("--dry-run", action="store_true", help="plan only (= the plan command)")
    g.add_argument("--yes", "-y", action="store_true", help="do not ask to confirm the plan")

    parser = _Parser(prog=PROG, description="Reconcile a data owner's MedPerf manifest: "
                     f"`{PROG} MANIFEST...` plans, asks once and applies.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("plan", parents=[common], help="the dry-run diff: nothing is sent, nothing is run "
                       "(exit 0 nothing to do, 2 changes)")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST")
    p.add_argument("-o", "--out", metavar="FILE", help="save the plan as JSON, to apply exactly later")
    p.add_argument("--request-again", action="store_true", help="request a REJECTED association anew (once, "
                   "after talking to the benchmark owner)")
    a = sub.add_parser("apply", parents=[common], help="show the plan, ask once (unless --yes), do it")
    a.add_argument("manifests", nargs="+", metavar="MANIFEST", help="manifest files or folders, and optionally "
                   "a saved plan.json last")
    a.add_argument("--wait", action="store_true", help="wait for the benchmark owner's approval (polls with "
                   "backoff) instead of exiting 3 at the gate")
    a.add_argument("--timeout", type=_seconds, default=6 * 3600.0, metavar="DURATION",
                   help="with --wait: give up waiting after this long (default 6h; e.g. 90s, 30m, 6h)")
    a.add_argument("--parallel", type=_positive, default=None, metavar="N", help="run up to N models at once "
                   "(default 1; with the slurm executor, up to 8 jobs in flight)")
    a.add_argument("--executor", choices=("docker", "slurm"), default=None,
                   help="where the container tasks run: this machine's Docker engine, or Slurm jobs (default: "
                   "runtime.executor, else docker)")
    a.add_argument("--request-again", action="store_true", help="request a REJECTED association anew (once, "
                   "after talking to the benchmark owner)")
    a.add_argument("--task-timeout", type=_seconds, default=None, metavar="DURATION",
                   help="stop any container task that runs longer than this (wall clock; default: no limit)")
    a.add_argument("--task-idle-timeout", type=_seconds, default=None, metavar="DURATION",
                   help="stop any container task that prints nothing for this long (default: no limit)")
    a.add_argument("--gpus", type=_gpus, default=None, metavar="all|N|device=IDS",
                   help="GPUs for every container task, as MedPerf's --gpus (0: none; default: runtime.gpus, "
                   "else each task's run_args)")
    a.add_argument("--shm-size", type=_shm_size, default=None, metavar="SIZE",
                   help="the containers' /dev/shm, e.g. 2g, as MedPerf's --shm-size (default: runtime.shm_size, "
                   "else each task's run_args)")
    v = sub.add_parser("validate", parents=[common], help="offline: schema and paths only")
    v.add_argument("manifests", nargs="+", metavar="MANIFEST")
    st = sub.add_parser("status", parents=[common], help="observed state: datasets, associations, each model's "
                        "result (none, computed, submitted)")
    st.add_argument("manifests", nargs="+", metavar="MANIFEST")
    r = sub.add_parser("results", parents=[common], help="my results of the manifest's datasets (local metrics, "
                       "MedPerf's result view)")
    r.add_argument("manifests", nargs="+", metavar="MANIFEST")
    r.add_argument("--benchmark", metavar="B", help="only this benchmark (id or name)")
    r.add_argument("--format", choices=("table", "yaml", "json"), default="table")
    assoc = sub.add_parser("association", help="the benchmark owner's side of the gate: approve or reject a "
                           "dataset's association request")
    assoc.add_argument("decision", choices=("approve", "reject"))
    assoc.add_argument("--benchmark", "-b", required=True, metavar="B", help="benchmark id or name")
    assoc.add_argument("--dataset", "-d", required=True, metavar="D", help="dataset id or name")
    assoc.add_argument("--server", metavar="URL", help="the registry (default $MEDPERF_SERVER)")
    tok = assoc.add_mutually_exclusive_group()
    tok.add_argument("--token-env", metavar="NAME", default="MEDPERF_TOKEN",
                     help="environment variable holding the token (default MEDPERF_TOKEN)")
    tok.add_argument("--token-file", metavar="FILE", help="file holding the token")
    tok.add_argument("--manifest", metavar="MANIFEST", help="take the server (url, token or oidc sign-in, ca_file) "
                     "from this manifest's server section")
    assoc.add_argument("--state-dir", metavar="DIR", help="where the ledger of what was sent is kept")
    assoc.add_argument("--output", choices=("text", "json"), default="text")
    assoc.add_argument("--request-timeout", type=_seconds, default=DEADLINE_S, metavar="DURATION",
                       help=f"the longest one request may take, answer included (default {DEADLINE_S:g}s)")
    assoc.add_argument("--ca-file", metavar="PEM", help="the certificate authority of an https registry with a "
                       "private CA (default: the system's trust store)")
    assoc.add_argument("--debug", action="store_true", help="show tracebacks")
    for name, text in (("login", "sign in to the manifest's OpenID provider (server.oidc) with the device flow: "
                                 "open the page shown and enter the code; every command then refreshes the tokens"),
                       ("logout", "revoke the sign-in's refresh token at the provider and delete the credentials "
                                  "file")):
        li = sub.add_parser(name, help=text, description=text)
        li.add_argument("manifests", nargs="+", metavar="MANIFEST")
        li.add_argument("--var", action="append", default=[], metavar="K=V", help="a template variable (vars.K)")
        li.add_argument("--values", action="append", default=[], metavar="FILE",
                        help="YAML file of template variables")
        li.add_argument("--ca-file", metavar="PEM", help="the certificate authority of an https provider with a "
                        "private CA (overrides server.ca_file; default: the system's trust store)")
        li.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _gpus(text: str) -> str:
    try:
        normalize_gpus(text)
    except ContainerSpecError:
        raise argparse.ArgumentTypeError(f"{text!r} is not all, a count, or device=<ids> (e.g. device=0,1)") from None
    return text


def _shm_size(text: str) -> str:
    try:
        check_shm_size(text)
    except ContainerSpecError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 2g, 512m)") from None
    return text


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return n


def parse(argv: Sequence[str]) -> tuple[Options | InspectOptions | Decision | LoginOptions, bool]:
    """Return the command's options and the debug flag."""
    argv = list(argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "apply")  # `medperf-apply MANIFEST...` = apply
    ns = build_parser().parse_args(argv)
    command = ns.command
    if command == "association":
        return parse_decision(vars(ns)), ns.debug
    if command in ("login", "logout"):
        return LoginOptions(command=command, manifests=tuple(ns.manifests),
                            variables=load_values(ns.values, ns.var), ca_file=ns.ca_file), ns.debug
    if ns.dry_run:
        if command == "validate":
            raise UsageError("--dry-run does not apply to validate")
        command = "plan"
    variables = load_values(ns.values, ns.var)
    if command in ("status", "results"):
        return InspectOptions(command=command, manifests=tuple(ns.manifests), variables=variables, output=ns.output,
                              targets=tuple(ns.target), state_dir=ns.state_dir,
                              benchmark=getattr(ns, "benchmark", None), request_timeout=ns.request_timeout,
                              ca_file=ns.ca_file,
                              format=getattr(ns, "format", "table")), ns.debug
    manifests, plan_file = list(ns.manifests), None
    if ns.command == "apply" and manifests and manifests[-1].endswith(".json"):
        plan_file = manifests.pop()
        if not manifests:
            raise UsageError("apply PLAN.json needs the manifests too: apply MANIFEST... PLAN.json")
    if plan_file and ns.dry_run:
        raise UsageError("--dry-run with a saved plan: nothing to do (run plan again instead)")
    defaults = Options(command=command, manifests=())
    opts = Options(command=command, manifests=tuple(manifests), variables=variables, plan_file=plan_file,
                   out=getattr(ns, "out", None), output=ns.output, event_log=ns.event_log, targets=tuple(ns.target),
                   state_dir=ns.state_dir, lock_timeout=ns.lock_timeout, yes=ns.yes,
                   wait=getattr(ns, "wait", False), wait_timeout=getattr(ns, "timeout", defaults.wait_timeout),
                   parallel=getattr(ns, "parallel", None), request_again=getattr(ns, "request_again", False),
                   task_timeout=getattr(ns, "task_timeout", None),
                   task_idle_timeout=getattr(ns, "task_idle_timeout", None), request_timeout=ns.request_timeout,
                   ca_file=ns.ca_file, gpus=getattr(ns, "gpus", None), shm_size=getattr(ns, "shm_size", None),
                   executor=getattr(ns, "executor", None))
    if command != "apply" and getattr(ns, "wait", False):
        raise UsageError("--wait applies to apply only")
    return opts, ns.debug


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
        try:
            opts, debug = parse(argv)
        except SystemExit as e:  # --help
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
        what = e.message if isinstance(e, Interrupted) else "interrupted"
        console.error(f"{what}; nothing half-done is lost: run again to resume")
        return _fail(console, what, ExitStatus.INTERRUPTED)
    except MedperfApplyError as e:
        if debug:
            traceback.print_exc(file=stderr)
        console.error(str(e))
        return _fail(console, str(e), e.exit_code, where=e.where)
    except Exception as e:  # a bug: say so plainly; the traceback only with --debug
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
