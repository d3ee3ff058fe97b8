"""argv -> per-command options: the option table (which subcommand shows and accepts which option), the parser,
the argument types, a bare command's help and did-you-mean for a mistyped subcommand."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runner.clients.retry import DEADLINE_S
from runner.container_spec import check_shm_size, normalize_gpus
from runner.decide import Decision, parse_decision
from runner.errors import ContainerSpecError, UsageError
from runner.inspect import InspectOptions
from runner.load import load_values
from runner.login import LoginOptions
from runner.reconcile import Options

PROG = "medperf-apply"
MANIFEST_COMMANDS = ("plan", "apply", "validate", "status", "results")
COMMANDS = (*MANIFEST_COMMANDS, "association", "login", "logout")
_TOP_FLAGS = ("-h", "--help", "--version")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default shown, unless its help says it already or there is none worth saying (off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, which is our 'plan found changes': raise UsageError (64) instead."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(message, hint=f"see `{PROG} {self._cmd()}--help`")

    def _cmd(self) -> str:
        parts = self.prog.split()
        return (parts[1] + " ") if len(parts) > 1 else ""


class _Version(argparse.Action):
    """--version: the installed distribution's version, looked up only when asked (startup stays fast)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(f"{parser.prog.split()[0]} {package_version()}\n")  # as argparse's own: stdout
        parser.exit()

    def format_usage(self) -> str:
        return self.option_strings[0]


def package_version(distribution: str = "medperf-apply") -> str:
    """The installed distribution's version (a source tree that was never installed says so)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(not installed)"


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 30s, 10m, 6h)") from None


def _checked_by(check: Callable[[str], Any], expected: str) -> Callable[[str], str]:
    """An argparse type: the text as given, once `check` (a container_spec rule) accepts it."""
    def checked(text: str) -> str:
        try:
            check(text)
        except ContainerSpecError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        return text
    return checked


_gpus = _checked_by(normalize_gpus, "all, a count, or device=<ids> (e.g. device=0,1)")
_shm_size = _checked_by(check_shm_size, "a size (e.g. 2g, 512m)")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return n


_REJECTED = "request a REJECTED association anew (once, after talking to the benchmark owner)"
_CA = "the certificate authority of an https registry with a private CA (overrides server.ca_file; default: the " \
      "system's trust store)"

# Every option of the manifest commands, declared once: name -> (flags, argparse keywords).
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "var": (("--var",), dict(action="append", default=[], metavar="K=V", help="a template variable (vars.K); "
                             "repeatable")),
    "values": (("--values",), dict(action="append", default=[], metavar="FILE",
                                   help="a YAML file of template variables; repeatable")),
    "target": (("--target",), dict(action="append", default=[], metavar="dataset/NAME[/benchmark/B]",
                                   help="only this dataset (and its prerequisites); an error if it matches nothing; "
                                   "repeatable")),
    "state_dir": (("--state-dir",), dict(metavar="DIR", help="the local state dir (default $MEDPERF_APPLY_HOME or "
                                         "~/.medperf_apply/<server host_port>/)")),
    "request_timeout": (("--request-timeout",), dict(type=_seconds, default=DEADLINE_S, metavar="DURATION",
                        help=f"the longest one request to the registry may take, answer included "
                        f"(default {DEADLINE_S:g}s)")),
    "ca_file": (("--ca-file",), dict(metavar="PEM", help=_CA)),
    "output": (("--output",), dict(choices=("text", "json"), default="text",
                                   help="json: only a versioned JSON document on stdout, human lines on stderr, "
                                   "never a prompt")),
    "event_log": (("--event-log",), dict(metavar="FILE", help="append one JSON event per line to FILE")),
    "debug": (("--debug",), dict(action="store_true", help="show tracebacks")),
    "out": (("-o", "--out"), dict(metavar="FILE", help="save the plan as JSON, to apply exactly later")),
    "request_again": (("--request-again",), dict(action="store_true", help=_REJECTED)),
    "yes": (("--yes", "-y"), dict(action="store_true", help="do not ask to confirm the plan")),
    "dry_run": (("--dry-run",), dict(action="store_true", help="plan only (= the plan command)")),
    "lock_timeout": (("--lock-timeout",), dict(type=_seconds, default=0.0, metavar="DURATION",
                     help="wait this long for another run holding the state dir's lock (default 0: fail at once)")),
    "wait": (("--wait",), dict(action="store_true", help="wait for the benchmark owner's approval (polls with "
                               "backoff) instead of exiting 3 at the gate")),
    "timeout": (("--timeout",), dict(type=_seconds, default=6 * 3600.0, metavar="DURATION",
                                     help="with --wait: give up waiting after this long (default 6h; e.g. 90s, "
                                     "30m, 6h)")),
    "parallel": (("--parallel",), dict(type=_positive, default=None, metavar="N", help="run up to N container "
                                       "tasks at once (default 1; with the slurm executor, up to 8 jobs in flight)")),
    "executor": (("--executor",), dict(choices=("docker", "slurm"), default=None, help="where the container tasks "
                                       "run: this machine's Docker engine, or Slurm jobs (default: runtime.executor, "
                                       "else docker)")),
    "task_timeout": (("--task-timeout",), dict(type=_seconds, default=None, metavar="DURATION",
                     help="stop any container task that runs longer than this (wall clock; default: no limit)")),
    "task_idle_timeout": (("--task-idle-timeout",), dict(type=_seconds, default=None, metavar="DURATION",
                          help="stop any container task that prints nothing for this long (default: no limit)")),
    "gpus": (("--gpus",), dict(type=_gpus, default=None, metavar="all|N|device=IDS",
                               help="GPUs for every container task, as MedPerf's --gpus (0: none; default: "
                               "runtime.gpus, else each task's run_args)")),
    "shm_size": (("--shm-size",), dict(type=_shm_size, default=None, metavar="SIZE",
                                       help="the containers' /dev/shm, e.g. 2g, as MedPerf's --shm-size (default: "
                                       "runtime.shm_size, else each task's run_args)")),
    "benchmark": (("--benchmark",), dict(metavar="B", help="only this benchmark (id or name)")),
    "format": (("--format",), dict(choices=("table", "yaml", "json"), default="table",
                                   help="how the results are printed")),
}

# Option groups (title, option names), and the groups each manifest command acts on: a subcommand shows and
# accepts exactly these. A new option is one line in OPTIONS and its name in a group.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "template": ("template", ("var", "values")),
    "scope": ("scope", ("target", "state_dir")),
    "registry": ("registry", ("request_timeout", "ca_file")),
    "plan": ("plan", ("out", "request_again")),
    "apply": ("apply", ("yes", "dry_run", "request_again", "lock_timeout", "wait", "timeout")),
    "containers": ("container", ("executor", "parallel", "task_timeout", "task_idle_timeout", "gpus", "shm_size")),
    "results": ("results", ("benchmark", "format")),
    "events": ("event", ("event_log",)),
    "output": ("output", ("output", "debug")),
}
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "plan": ("template", "scope", "registry", "plan", "events", "output"),
    "apply": ("template", "scope", "registry", "apply", "containers", "events", "output"),
    "validate": ("template", "output"),
    "status": ("template", "scope", "registry", "output"),
    "results": ("template", "scope", "registry", "results", "output"),
}
COMMAND_HELP = {
    "plan": "the dry-run diff: nothing is sent, nothing is run (exit 0 nothing to do, 2 changes)",
    "apply": "show the plan, ask once (unless --yes), do it",
    "validate": "offline: schema and paths only",
    "status": "observed state: datasets, associations, each model's result (none, computed, submitted)",
    "results": "my results of the manifest's datasets (local metrics, MedPerf's result view)",
}
_MANIFESTS_HELP = {"apply": "manifest files or folders, and optionally a saved plan.json last"}


def _add(parser: argparse.ArgumentParser, name: str, **override: Any) -> None:
    flags, kwargs = OPTIONS[name]
    parser.add_argument(*flags, dest=name, **{**kwargs, **override})


def build_parser() -> argparse.ArgumentParser:
    """The command line, declared in one place (tests/docs reads it)."""
    parser = _Parser(prog=PROG, description="Reconcile a MedPerf manifest (a data owner's datasets, or a benchmark owner's decisions): "
                     f"`{PROG} MANIFEST...` plans, asks once and applies (= `{PROG} apply MANIFEST...`).")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                help="what to do (each has its own --help)")
    for command, groups in COMMAND_GROUPS.items():
        p = sub.add_parser(command, help=COMMAND_HELP[command], description=COMMAND_HELP[command])
        p.add_argument("manifests", nargs="+", metavar="MANIFEST",
                       help=_MANIFESTS_HELP.get(command, "manifest files or folders"))
        for group in groups:
            title, names = GROUPS[group]
            g = p.add_argument_group(f"{title} options")
            for name in names:
                _add(g, name)
    _association(sub)
    _login(sub)
    return parser


def _association(sub) -> None:
    text = ("the benchmark owner's side of the gate: approve or reject a dataset's association request "
            "(idempotent), or list my benchmarks' requests")
    assoc = sub.add_parser("association", help=text, description=text)
    assoc.add_argument("decision", choices=("approve", "reject", "list"),
                       help="approve | reject one request (already so: exit 0, nothing sent), or list them")
    assoc.add_argument("--benchmark", "-b", metavar="B", help="benchmark id or name (approve, reject: required; "
                       "list: only this benchmark)")
    assoc.add_argument("--dataset", "-d", metavar="D", help="dataset id or name (approve, reject: required)")
    assoc.add_argument("--status", choices=("pending", "approved", "rejected"),
                       help="list: only the requests whose latest status is this (default: all)")
    assoc.add_argument("--server", metavar="URL", help="the registry (default $MEDPERF_SERVER)")
    tok = assoc.add_mutually_exclusive_group()
    tok.add_argument("--token-env", metavar="NAME", default="MEDPERF_TOKEN",
                     help="environment variable holding the token")
    tok.add_argument("--token-file", metavar="FILE", help="file holding the token")
    tok.add_argument("--manifest", metavar="MANIFEST", help="take the server (url, token or oidc sign-in, ca_file) "
                     "from this manifest's server section")
    _add(assoc, "state_dir", help="where the ledger of what was sent is kept (default: as for the manifest "
         "commands)")
    _add(assoc, "output")
    _add(assoc, "request_timeout")
    _add(assoc, "ca_file", help="the certificate authority of an https registry with a private CA (default: the "
         "system's trust store)")
    _add(assoc, "debug")


def _login(sub) -> None:
    for name, text in (("login", "sign in to the manifest's OpenID provider (server.oidc) with the device flow: "
                                 "open the page shown and enter the code; every command then refreshes the tokens"),
                       ("logout", "revoke the sign-in's refresh token at the provider and delete the credentials "
                                  "file")):
        li = sub.add_parser(name, help=text, description=text)
        li.add_argument("manifests", nargs="+", metavar="MANIFEST", help="the manifest whose server.oidc to use")
        _add(li, "var")
        _add(li, "values")
        _add(li, "ca_file", help="the certificate authority of an https provider with a private CA (overrides "
             "server.ca_file; default: the system's trust store)")
        _add(li, "debug")


def _command_of(argv: list[str]) -> list[str]:
    """argv with its command made explicit: `MANIFEST...` is apply; a typo of a command is a usage error."""
    if not argv or argv[0] in COMMANDS or argv[0] in _TOP_FLAGS:
        return argv
    first = argv[0]
    if not first.startswith("-") and not Path(first).exists() and not _path_like(first):
        import difflib  # only for a word that is neither a command nor a manifest

        close = difflib.get_close_matches(first, COMMANDS, n=1, cutoff=0.6)
        if close:
            raise UsageError(f"unknown command {first!r}", hint=f"did you mean {close[0]!r}? (no manifest of that "
                             f"name exists either; `{PROG} --help` lists the commands)")
        raise UsageError(f"unknown command {first!r}, and no manifest file or folder of that name",
                         hint=f"commands: {', '.join(COMMANDS)}; see `{PROG} --help`")
    return ["apply", *argv]  # `medperf-apply MANIFEST...` = apply


def _path_like(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith((".yaml", ".yml", ".json", ".j2"))


def parse(argv: Sequence[str]) -> tuple[Options | InspectOptions | Decision | LoginOptions, bool]:
    """Return the command's options and the debug flag (bare `medperf-apply` prints the help: SystemExit 0)."""
    parser = build_parser()
    if not argv:
        parser.print_help()
        raise SystemExit(0)
    ns = parser.parse_args(_command_of(list(argv)))
    command = ns.command
    if command == "association":
        return parse_decision(vars(ns)), ns.debug
    if command in ("login", "logout"):
        return LoginOptions(command=command, manifests=tuple(ns.manifests),
                            variables=load_values(ns.values, ns.var), ca_file=ns.ca_file), ns.debug
    given = vars(ns)
    if given.get("dry_run"):
        command = "plan"
    variables = load_values(ns.values, ns.var)
    if command in ("status", "results"):
        return InspectOptions(command=command, manifests=tuple(ns.manifests), variables=variables, output=ns.output,
                              targets=tuple(ns.target), state_dir=ns.state_dir,
                              benchmark=given.get("benchmark"), request_timeout=ns.request_timeout,
                              ca_file=ns.ca_file, format=given.get("format", "table")), ns.debug
    manifests, plan_file = list(ns.manifests), None
    if ns.command == "apply" and manifests and manifests[-1].endswith(".json"):
        plan_file = manifests.pop()
        if not manifests:
            raise UsageError("apply PLAN.json needs the manifests too: apply MANIFEST... PLAN.json")
    if plan_file and given.get("dry_run"):
        raise UsageError("--dry-run with a saved plan: nothing to do (run plan again instead)")
    if given.get("dry_run") and given.get("wait"):
        raise UsageError("--wait with --dry-run: a plan does not wait")
    fields = {f.name for f in dataclasses.fields(Options)}
    chosen = {k: v for k, v in given.items() if k in fields and k not in ("command", "manifests", "variables")}
    chosen["targets"] = tuple(given.get("target", ()))
    if "timeout" in given:
        chosen["wait_timeout"] = given["timeout"]
    return Options(command=command, manifests=tuple(manifests), variables=variables, plan_file=plan_file,
                   **chosen), ns.debug
