"""README.md says only what is true: its commands exist, its manifest reference matches the schema."""

from __future__ import annotations

import json
import subprocess

import pytest

from runner.cli import build_parser as apply_parser
from server.cli import build_parser as server_parser
from tests.docs.readme import (
    README,
    REPO,
    Command,
    check_cli,
    commands,
    make_targets,
    reference_rows,
    schema_fields,
    section,
)

TEXT = README.read_text(encoding="utf-8")
COMMANDS = commands(TEXT)
SCHEMA = json.loads((REPO / "schemas" / "manifest.schema.json").read_text(encoding="utf-8"))


def _of(program: str) -> list[Command]:
    return [c for c in COMMANDS if c.program == program]


def test_the_readme_shows_the_commands_it_is_about():
    assert len(_of("make")) >= 5 and len(_of("medperf-apply")) >= 10 and len(_of("medperf-server")) >= 5
    first_block = TEXT.split("```", 2)[1]
    assert "make demo" in first_block and "make test" in first_block, "the two commands come first"


@pytest.mark.parametrize("cmd", _of("make"), ids=str)
def test_every_make_target_mentioned_exists(cmd):
    targets = make_targets((REPO / "Makefile").read_text(encoding="utf-8"))
    named = [w for w in cmd.args if not w.startswith("-") and "=" not in w]
    missing = [t for t in named if t not in targets]
    assert not missing, f"{cmd}: the Makefile has no target {missing} (it has {sorted(targets)})"


@pytest.mark.parametrize("cmd", _of("medperf-apply"), ids=str)
def test_every_medperf_apply_command_and_flag_mentioned_exists(cmd):
    assert check_cli(cmd, apply_parser(), implicit="apply") == []


@pytest.mark.parametrize("cmd", _of("medperf-server"), ids=str)
def test_every_medperf_server_command_and_flag_mentioned_exists(cmd):
    assert check_cli(cmd, server_parser()) == []


def test_the_checker_itself_catches_unknown_commands_flags_and_choices():
    p = apply_parser()
    bad = [Command("medperf-apply", tuple(a.split()), 0, a) for a in (
        "plan m.yaml --no-such-flag", "plan m.yaml --output xml", "validate m.yaml --target-all", "statuz m.yaml")]
    assert all(check_cli(c, p, implicit="apply") for c in bad)
    assert check_cli(Command("medperf-server", ("serve",), 0, "serve"), server_parser())
    assert check_cli(Command("medperf-server", ("user", "delete"), 0, ""), server_parser())
    assert check_cli(Command("medperf-apply", ("association", "revoke", "--benchmark", "1", "--dataset", "1"), 0, ""),
                     p, implicit="apply")
    assert check_cli(Command("medperf-server", ("migrate", "extra"), 0, ""), server_parser())
    good = Command("medperf-apply", ("manifests/x.yaml", "--yes", "--var", "a=b"), 0, "")
    assert check_cli(good, p, implicit="apply") == []


def test_make_help_is_the_default_and_lists_the_targets_the_readme_names():
    out = subprocess.run(["make", "-s", "--no-print-directory"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[1] for line in out.stdout.splitlines() if line.strip().startswith("make ")}
    named = {w for c in _of("make") for w in c.args if not w.startswith("-") and "=" not in w}
    assert named <= listed, f"make help does not list {named - listed}"
    assert {"demo", "demo-clean", "test", "help"} <= listed


def test_every_manifest_field_is_in_the_reference_and_nothing_else():
    rows = reference_rows(TEXT)
    fields = schema_fields(SCHEMA)
    assert set(fields) - set(rows) == set(), "fields of the schema missing from the README's reference"
    assert set(rows) - set(fields) == set(), "the README documents fields the schema does not have"


@pytest.mark.parametrize("path", sorted(schema_fields(SCHEMA)))
def test_each_reference_row_states_the_schemas_values_defaults_and_required(path):
    node = schema_fields(SCHEMA)[path]
    row = reference_rows(TEXT).get(path)
    if row is None:
        pytest.fail(f"{path} is not documented in README.md's manifest reference")
    for value in node.get("enum", []):
        assert f"`{value}`" in row, f"{path}: the value {value!r} is not listed"
    if "const" in node:
        assert f"`{node['const']}`" in row, f"{path}: the value {node['const']!r} is not shown"
    if "default" in node:
        shown = json.dumps(node["default"]) if isinstance(node["default"], bool) else node["default"]
        assert f"default `{shown}`" in row, f"{path}: the default {node['default']!r} is not stated"
    if node.get("type") == "boolean":
        assert "`true`" in row and "`false`" in row
    if node.get("maxLength"):
        assert f"at most {node['maxLength']}" in row, f"{path}: the length limit is not stated"
    parent, _, name = path.rpartition(".")
    owner = SCHEMA if not parent else _owner(parent)
    if name in owner.get("required", []):
        assert "(required)" in row, f"{path} is required by the schema"
    else:
        assert "required" not in row.split("|")[0], f"{path} is not required by the schema"


def _owner(path: str) -> dict:
    """The object schema holding the properties of `path` (an array's items for `x[]`)."""
    node = schema_fields(SCHEMA)[path.removesuffix("[]")]
    defs = SCHEMA["$defs"]
    if path.endswith("[]"):
        node = node["items"]
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_the_exit_codes_table_matches_the_runner():
    from runner import errors

    codes = {errors.EXIT_OK, errors.EXIT_ERROR, errors.EXIT_CHANGES, errors.EXIT_GATE, errors.EXIT_USAGE,
             errors.EXIT_INTERRUPTED}
    table = section(TEXT, "The command line")
    documented = {int(line.split("|")[1]) for line in table.splitlines()
                  if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert documented == codes


def test_the_tutorial_manifest_shown_is_the_one_shipped():
    shipped = (REPO / "manifests" / "chestxray-tutorial.yaml").read_text(encoding="utf-8")
    body = "\n".join(line for line in shipped.splitlines() if not line.startswith("#"))
    block = section(TEXT, "The tutorial, with a manifest").split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block.strip() == body.strip()


def test_relative_links_point_at_files_that_exist():
    import re

    links = re.findall(r"\]\(([^)#]+)\)", TEXT)
    local = [link for link in links if "://" not in link]
    assert local, "expected links to the manifests and the schema"
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing


def test_block_matching_treats_dots_as_varying_text_only():
    from tests.docs.readme import shown_in

    output = "    = associate           associated (APPROVED, approved 2026-11-23T17:48:39Z)\n"
    assert shown_in("    = associate           associated (APPROVED, approved ...)", output) == []
    assert shown_in("    = associate           associated (PENDING, ...)", output) != []
    assert shown_in("    + run model 9         infer", output) != []


def _all_options(parser) -> set[str]:
    import argparse

    found = {s for a in parser._actions for s in a.option_strings}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                found |= _all_options(sub)
    return found


def test_every_bare_flag_mentioned_belongs_to_one_of_the_commands():
    from tests.docs.readme import code_texts

    medperfs_own = {"--ignore-model-errors"}  # MedPerf's CLI flag, named for comparison
    known = _all_options(apply_parser()) | _all_options(server_parser()) | medperfs_own
    import re

    flags = {m.group(0) for _, span in code_texts(TEXT) if (m := re.match(r"--[a-z][a-z-]*", span))}
    assert len(flags) > 15
    assert flags - known == set()
