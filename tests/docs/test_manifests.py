"""Every manifest in manifests/ validates with `medperf-apply validate` (in-process), templates rendered with
its values file, in a temp copy where the data folders it names exist."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
import yaml

from runner.cli import main
from runner.load import load, load_values

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
FILES = sorted(p for p in MANIFESTS.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
ENV = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}  # no MEDPERF_SERVER: the manifests' own defaults


def values_for(manifest: Path) -> list[Path]:
    """The values file of a templated manifest: manifests/values/<same name>, if there is one."""
    candidate = manifest.parent / "values" / manifest.name
    return [candidate] if candidate.is_file() else []


@pytest.fixture
def copy(tmp_path) -> Path:
    """manifests/ copied under tmp_path/repo/, so that paths like ../medperf_tutorial land in tmp_path."""
    dest = tmp_path / "repo" / "manifests"
    shutil.copytree(MANIFESTS, dest)
    return dest


def make_data_folders(manifest: Path, values: list[Path], variables: dict | None = None) -> list[Path]:
    """Create the data and labels folders the rendered manifest names (they hold data on a real site)."""
    docs = load([manifest], variables={**load_values(values, []), **(variables or {})}, environ=ENV)
    made = []
    for doc in docs:
        for ds in doc.data.get("datasets") or []:
            for key in ("data_path", "labels_path"):
                folder = (doc.folder / ds[key]).resolve()
                folder.mkdir(parents=True, exist_ok=True)
                made.append(folder)
    return made


def run(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""), environ=ENV)
    return code, out.getvalue() + err.getvalue()


def test_the_folder_holds_the_tutorial_and_a_templated_manifest():
    names = [p.name for p in FILES]
    assert "chestxray-tutorial.yaml" in names and "two-benchmarks.yaml" in names
    for vf in (MANIFESTS / "values").iterdir():
        assert (MANIFESTS / vf.name).is_file(), f"values file {vf.name} has no manifest of that name"


@pytest.mark.parametrize("manifest", FILES, ids=lambda p: p.name)
def test_manifest_validates(manifest, copy, tmp_path):
    target = copy / manifest.name
    values = values_for(target)
    made = make_data_folders(target, values)
    assert made or "kind: BenchmarkOwner" in target.read_text(), "a data owner's manifest names a dataset"
    assert all(tmp_path in p.parents for p in made), "data paths are relative, inside the copy"
    argv = ["validate", str(target)]
    for v in values:
        argv += ["--values", str(v)]
    code, out = run(*argv)
    assert code == 0, out
    assert "valid:" in out


@pytest.mark.parametrize("manifest", FILES, ids=lambda p: p.name)
def test_manifest_starts_with_a_schema_modeline_that_resolves(manifest):
    first = manifest.read_text(encoding="utf-8").splitlines()[0]
    m = MODELINE.match(first)
    assert m, f"{manifest.name}: first line should be '# yaml-language-server: $schema=...'"
    assert (manifest.parent / m.group(1)).resolve() == (REPO / "schemas" / "manifest.schema.json").resolve()


def test_the_whole_folder_validates_with_the_values(copy, tmp_path):
    values = [copy / "values" / "two-benchmarks.yaml"]
    for f in sorted(copy.glob("*.yaml")):
        make_data_folders(f, values)
    code, out = run("validate", str(copy), "--values", str(values[0]))
    assert code == 0, out
    assert f"valid: {len(FILES)} file(s)" in out


def test_the_template_needs_its_values_and_names_the_missing_one(copy, tmp_path):
    target = copy / "two-benchmarks.yaml"
    make_data_folders(target, values_for(target))
    code, out = run("validate", str(target))
    assert code == 1
    assert "vars.site" in out and "two-benchmarks.yaml:" in out


def test_var_overrides_the_values_file(copy, tmp_path):
    target = copy / "two-benchmarks.yaml"
    values = values_for(target)
    docs = load([target], variables={**load_values(values, ["site=south"])}, environ=ENV)
    names = [d["name"] for doc in docs for d in doc.data["datasets"]]
    assert names == ["south-chest-2024", "south-chest-2025"]
    benchmarks = [b["benchmark"] for d in docs[0].data["datasets"] for b in d["benchmarks"]]
    assert benchmarks == ["chestxray", "chestxray-external"], "two datasets, two benchmarks"
    # the data folders of another site do not exist: validate says so, with file and line
    make_data_folders(target, values)  # north's
    code, out = run("validate", str(target), "--values", str(values[0]), "--var", "site=south",
                    "--var", "data_root=../elsewhere")
    assert code == 1 and "no such folder" in out and "two-benchmarks.yaml:" in out


def test_env_sets_the_server_url(copy):
    target = copy / "chestxray-tutorial.yaml"
    (doc,) = load([target], environ={**ENV, "MEDPERF_SERVER": "https://registry.example.org"})
    assert doc.data["server"]["url"] == "https://registry.example.org"
    (doc,) = load([target], environ=ENV)
    assert doc.data["server"]["url"] == "http://127.0.0.1:8000"


def test_ci_workflow_runs_commands_that_exist_and_handles_the_exit_codes():
    from runner.cli import build_parser
    from tests.docs.readme import Command, check_cli, commands

    text = (MANIFESTS / "ci" / "reconcile.yml").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    found = [c for r in runs for c in commands("```\n" + r + "\n```")]
    assert {c.args[0] for c in found} >= {"plan", "apply", "validate"}
    for c in found:
        assert check_cli(Command(c.program, c.args, c.line, c.text), build_parser(), implicit="apply") == [], c.text
    plan_step = next(r for r in runs if "medperf-apply plan" in r)
    apply_step = next(r for r in runs if "medperf-apply apply" in r)
    assert "-ne 2" in plan_step, "a plan with changes (exit 2) is not a failure"
    assert re.search(r"^\s*3\)", apply_step, flags=re.M), "waiting at a gate (exit 3) is not a failure"
    assert set(workflow[True] if True in workflow else workflow["on"]) >= {"pull_request", "push", "schedule"}
