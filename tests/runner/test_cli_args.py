"""The command line's surface, in-process: --version, help, did-you-mean, each subcommand's own options, defaults."""

from __future__ import annotations

import argparse
import io
import re
from importlib.metadata import version

import pytest

from runner.cli import build_parser, main
from server.cli import build_parser as server_parser
from server.cli import main as server_main

APPLY_ONLY = {"--yes", "--dry-run", "--lock-timeout", "--wait", "--timeout", "--parallel", "--task-timeout",
              "--task-idle-timeout", "--gpus", "--shm-size", "--executor"}
COMMON = {"--var", "--values", "--output", "--debug"}  # every manifest command
REGISTRY = {"--target", "--state-dir", "--request-timeout", "--ca-file"}  # every command that reads the registry


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""), environ={})
    return code, out.getvalue(), err.getvalue()


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in subparsers(sub).items()})
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def test_version_from_the_package_metadata(capsys):
    assert run("--version") == (0, f"medperf-apply {version('medperf-apply')}\n", "")
    with pytest.raises(SystemExit) as e:
        server_main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"medperf-server {version('medperf-apply')}\n"


def test_a_bare_command_prints_the_help_and_exits_0(capsys):
    code, out, err = run()
    assert code == 0 and err == ""
    assert out.startswith("usage: medperf-apply")
    for command in ("plan", "apply", "validate", "status", "results", "association", "login", "logout"):
        assert f"\n    {command}" in out
    assert server_main([]) == 0
    assert capsys.readouterr().out.startswith("usage: medperf-server")


def test_a_command_typo_is_a_usage_error_with_a_suggestion(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run("plna", "manifest.yaml")
    assert code == 64 and out == ""
    assert "unknown command 'plna'; did you mean 'plan'?" in err
    code, _, err = run("stauts")
    assert code == 64 and "did you mean 'status'?" in err
    code, _, err = run("xyzzy")
    assert code == 64 and "unknown command 'xyzzy'" in err and "plan, apply, validate" in err


def test_a_manifest_path_is_still_apply_even_when_it_looks_like_a_command(tmp_path, monkeypatch):
    """`medperf-apply MANIFEST` = apply: a file named like a typo of a command is a manifest, not a typo."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plna").write_text("apiVersion: medperf-apply/v1\nkind: DataOwner\n")  # invalid: no server
    code, _, err = run("plna", "--yes")
    assert code == 1 and "unknown command" not in err and "plna" in err and "server" in err
    code, _, err = run("missing.yaml", "--yes")  # path-like: the manifest's error, not a command's
    assert code == 1 and "unknown command" not in err and "missing.yaml" in err


@pytest.mark.parametrize("command", ["plan", "validate", "status", "results"])
def test_read_only_commands_neither_show_nor_accept_apply_options(command):
    sub = subparsers(build_parser())[command]
    assert options(sub) & APPLY_ONLY == set()
    assert COMMON <= options(sub)
    help_text = sub.format_help()
    for flag in ("--yes", "--lock-timeout", "--wait"):
        assert flag not in help_text
        code, _, err = run(command, "m.yaml", flag)
        assert code == 64 and "unrecognized arguments" in err and flag in err


def test_each_command_has_exactly_the_options_it_acts_on():
    subs = subparsers(build_parser())
    assert options(subs["apply"]) == COMMON | REGISTRY | APPLY_ONLY | {"--request-again", "--event-log"}
    assert options(subs["plan"]) == COMMON | REGISTRY | {"--out", "--request-again", "--event-log"}
    assert options(subs["validate"]) == COMMON  # offline: no registry, no state dir
    assert options(subs["status"]) == COMMON | REGISTRY
    assert options(subs["results"]) == COMMON | REGISTRY | {"--benchmark", "--format"}
    assert options(subs["login"]) == {"--var", "--values", "--ca-file", "--debug"}


def test_every_argument_has_help_text():
    for parser in (build_parser(), server_parser()):
        for name, sub in {"": parser, **subparsers(parser)}.items():
            for action in sub._actions:
                where = f"{sub.prog}: {action.option_strings or action.dest}"
                assert action.help and action.help.strip(), f"{where} has no help text ({name})"


def test_defaults_are_shown_and_none_is_never_shown_as_one():
    subs = subparsers(build_parser())
    apply_help = " ".join(subs["apply"].format_help().split())
    assert "at once (default 1; with the slurm executor, up to 8 jobs in flight)" in apply_help  # --parallel
    assert "default 6h" in apply_help and "default 120s" in apply_help  # written in the help itself
    assert "(default: text)" in subs["status"].format_help()
    run_help = " ".join(subparsers(server_parser())["run"].format_help().split())
    assert "(default: 127.0.0.1)" in run_help and "(default: 8000)" in run_help and "(default: 4)" in run_help
    for text in (apply_help, run_help, server_parser().format_help()):
        assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text
        assert not re.search(r"default[^()]*\) \(default", text)  # a default said twice


def test_help_of_a_subcommand_goes_to_stdout_and_exits_0():
    code, out, err = run("apply", "--help")
    assert code == 0 and err == "" and "--parallel N" in out and "apply options:" in out
