"""load (files, folders, documents, Jinja2, positions) and validate (schema, all errors, hints, paths)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

import schemas
from runner.errors import ManifestError, UsageError
from runner.load import load, load_values, parse
from runner.model import AssociationGoal, DesiredState, ResultsGoal
from runner.reconcile import validate_cached
from runner.state import ValidationCache
from runner.validate import InvalidManifest, validate

DOC = """\
apiVersion: medperf-apply/v1
kind: DataOwner
server:
  url: http://127.0.0.1:8000
  token_env: MEDPERF_TOKEN
datasets:
  - name: {name}
    data_path: raw/images
    labels_path: raw/labels
    prepare_with: {{benchmark: chestxray}}
"""


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "raw" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "labels").mkdir(parents=True)
    return tmp_path


def test_the_schema_is_draft_2020_12_and_rejects_unknown_keys_everywhere():
    schema = schemas.load("manifest")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node.get("additionalProperties") is False, node
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)


def test_full_design_manifest_is_valid_with_defaults(folder):
    (folder / "m.yaml").write_text(DOC.format(name="a") + """\
    description: d
    location: here
    state: prepared
    consent: {statistics: true, compatibility_results: false, results: true}
    benchmarks:
      - benchmark: chestxray
        association: requested
        models: [1, chestxray_mobilenet]
        results: computed
        ignore_model_errors: true
      - benchmark: 2
""")
    m = validate(load([folder / "m.yaml"]))
    (d,) = m.datasets
    assert d.state is DesiredState.PREPARED and d.consent.compatibility_results is False
    assert d.data_path == (folder / "raw" / "images").resolve()
    b1, b2 = d.benchmarks
    assert (b1.association, b1.models, b1.results, b1.ignore_model_errors) == \
        (AssociationGoal.REQUESTED, (1, "chestxray_mobilenet"), ResultsGoal.COMPUTED, True)
    assert (b2.benchmark, b2.association, b2.models, b2.results) == \
        (2, AssociationGoal.APPROVED, "all", ResultsGoal.SUBMITTED)


def test_several_documents_files_and_a_folder(folder):
    (folder / "a.yaml").write_text(DOC.format(name="one") + "---\n" + DOC.format(name="two"))
    (folder / "b.yml").write_text(DOC.format(name="three"))
    (folder / "notes.txt").write_text("not a manifest")
    m = validate(load([folder]))
    assert [d.name for d in m.datasets] == ["one", "two", "three"]
    assert len(m.files) == 2


def test_duplicate_names_and_two_servers_are_errors(folder):
    (folder / "a.yaml").write_text(DOC.format(name="one") + "---\n" + DOC.format(name="one").replace("8000", "9000"))
    with pytest.raises(InvalidManifest) as info:
        validate(load([folder / "a.yaml"]))
    text = str(info.value)
    assert "already declared at" in text and "names another server" in text


def test_every_error_at_once_with_position_path_and_hint(folder):
    (folder / "m.yaml").write_text("""\
apiVersion: medperf-apply/v2
kind: DataOwner
server:
  url: 127.0.0.1:8000
  token_env: MEDPERF_TOKEN
  token_file: token.txt
datasets:
  - name: a
    data_path: raw/images
    labels_path: raw/nope
    prepare_with: {benchmark: chestxray, container: 2}
    state: opertional
    consnet: {statistics: true}
    benchmarks:
      - benchmark: chestxray
        models: some
""")
    with pytest.raises(InvalidManifest) as info:
        validate(load([folder / "m.yaml"]))
    lines = [str(p) for p in info.value.problems]
    f = str(folder / "m.yaml")
    expected = [
        f"{f}:1:13: apiVersion: must be 'medperf-apply/v1', not 'medperf-apply/v2'",
        f"{f}:4:3: server: give exactly one of 'token_env' or 'token_file'",
        f"{f}:4:8: server.url: '127.0.0.1:8000' is not an http(s) URL (e.g. http://127.0.0.1:8000)",
        f"{f}:6:15: server.token_file: no such file",
        f"{f}:10:18: datasets[0].labels_path: no such folder",
        f"{f}:11:19: datasets[0].prepare_with: give exactly one of 'benchmark' or 'container'",
        f"{f}:12:12: datasets[0].state: 'opertional' is not one of: registered, prepared, operational "
        "(did you mean 'operational'?)",
        f"{f}:13:5: datasets[0].consnet: unknown key 'consnet' (did you mean 'consent'?)",
        f"{f}:16:17: datasets[0].benchmarks[0].models: must be 'all' or a list of model ids or names",
    ]
    for text in expected:
        assert any(line.startswith(text) for line in lines), (text, lines)
    assert len(lines) == len(expected)
    assert info.value.exit_code == 1


def test_validation_cache_skips_the_schema_only_for_the_same_valid_data(folder, tmp_path):
    (folder / "m.yaml").write_text(DOC.format(name="a"))
    cache = ValidationCache(tmp_path / "state")
    validate_cached(load([folder / "m.yaml"]), cache)
    assert len(list(cache.folder.iterdir())) == 1
    validate_cached(load([folder / "m.yaml"]), cache)  # hit
    (folder / "m.yaml").write_text(DOC.format(name="a") + "    stat: x\n")
    with pytest.raises(InvalidManifest):
        validate_cached(load([folder / "m.yaml"]), cache)


def test_template_env_vars_values_and_strict_undefined(folder):
    (folder / "values.yaml").write_text("site: Ward 7\nname: from-values\n")
    (folder / "m.yaml").write_text(DOC.format(name="{{ vars.name }}") + "    location: {{ vars.site }} / {{ env.HOSP }}\n")
    values = load_values([folder / "values.yaml"], ["name=from-var"])
    m = validate(load([folder / "m.yaml"], variables=values, environ={"HOSP": "St Mary"}))
    assert m.datasets[0].name == "from-var" and m.datasets[0].location == "Ward 7 / St Mary"
    with pytest.raises(ManifestError) as info:
        load([folder / "m.yaml"], variables=values, environ={})
    assert str(info.value).startswith(f"{folder / 'm.yaml'}:11: template: 'env.HOSP' is undefined")


def test_template_syntax_error_and_bad_yaml_point_at_the_line(folder):
    (folder / "m.yaml").write_text("a: 1\nb: {{ oops\n")
    with pytest.raises(ManifestError) as info:
        load([folder / "m.yaml"])
    assert f"{folder / 'm.yaml'}:2" in str(info.value)
    (folder / "m.yaml").write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ManifestError) as info:
        load([folder / "m.yaml"])
    assert "not valid YAML" in str(info.value) and f"{folder / 'm.yaml'}:3:" in str(info.value)


def test_positions_are_recorded_for_values_and_keys():
    (doc,) = parse("a:\n  - x: 1\n    yy: [2, 3]\n", "f.yaml")
    assert doc.where(("a", 0, "yy", 1)) == doc.where(("a", 0, "yy", 1))
    assert str(doc.where(("a", 0, "yy", 1))) == "f.yaml:3:13"
    assert str(doc.where(("a", 0, "yy"), key=True)) == "f.yaml:3:5"
    assert str(doc.where(("a", 0, "nope"))) == "f.yaml:2:5"  # nearest existing parent


def test_missing_inputs_and_bad_vars():
    with pytest.raises(ManifestError):
        load(["/no/such/manifest.yaml"])
    with pytest.raises(UsageError):
        load_values([], ["novalue"])


def test_schema_json_is_pretty_and_loadable():
    text = (Path(schemas.__file__).parent / "manifest.schema.json").read_text()
    assert json.loads(text)["properties"]["apiVersion"]["const"] == "medperf-apply/v1"
