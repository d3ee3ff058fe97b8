"""Bad input, manifests: each malformed manifest exits 1 with file:line and a hint, never a traceback.

Every case goes through the real CLI (in-process, `plan`, the server pointed at a closed port so that a case
wrongly accepted fails loudly) and through load + validate, whose error must carry a hint. A few go through
the console script as a process too, to see the real stderr.
"""

from __future__ import annotations

import io
import re
import subprocess

import pytest

from runner.cli import main
from tests.trust.conftest import cli_command, no_traceback

GOOD = """\
apiVersion: medperf-apply/v1
kind: DataOwner
server:
  url: http://127.0.0.1:9
  token_env: MEDPERF_TOKEN
datasets:
  - name: mytestdata
    description: A tutorial dataset
    location: My machine
    data_path: raw/images
    labels_path: raw/labels
    prepare_with: {benchmark: chestxray}
    state: operational
    consent:
      statistics: true
    benchmarks:
      - benchmark: chestxray
        association: approved
        models: all
        results: submitted
        ignore_model_errors: false
"""


def sub(old: str, new: str, text: str = GOOD) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def drop(line: str) -> str:
    return sub(line + "\n", "")


BENCH = "      - benchmark: chestxray\n"

CASES: dict[str, str | bytes] = {
    # -- YAML syntax and encoding
    "unclosed bracket": sub("{benchmark: chestxray}", "{benchmark: chestxray"),
    "unclosed list": "datasets: [\n",
    "bad indentation": sub("    description: A", "      description: A"),
    "tab indentation": sub("    location: My machine", "\tlocation: My machine"),
    "mapping value in a scalar": sub("location: My machine", "location: My: machine: x"),
    "unterminated quote": sub("location: My machine", 'location: "My machine'),
    "undefined alias": sub("location: My machine", "location: *nowhere"),
    "python tag": sub("location: My machine", "location: !!python/object:os.system ls"),
    "duplicate key": sub("    state: operational\n", "    state: operational\n    state: registered\n"),
    "duplicate top-level key": GOOD + "kind: DataOwner\n",
    "nul byte": sub("My machine", "My\x00machine"),
    "control character": sub("My machine", "My\x07machine"),
    "latin-1 bytes": sub("My machine", "Mü machine").encode("latin-1"),
    "binary file": bytes(range(256)) * 8,
    "png file": b"\x89PNG\r\n\x1a\n" + bytes(200),
    "empty file": "",
    "only comments": "# nothing here\n# at all\n",
    "only a document marker": "---\n",
    "huge file": "# padding\n" * 500_000 + GOOD,
    "deep nesting": "x: " + "[" * 200 + "]" * 200 + "\n",
    "alias bomb": "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    "a list document": "- apiVersion: medperf-apply/v1\n",
    "a scalar document": "hello\n",
    # -- apiVersion and kind
    "wrong apiVersion": sub("medperf-apply/v1", "medperf-apply/v2"),
    "apiVersion of MedPerf": sub("medperf-apply/v1", "v1"),
    "apiVersion as a number": sub("apiVersion: medperf-apply/v1", "apiVersion: 1"),
    "no apiVersion": drop("apiVersion: medperf-apply/v1"),
    "wrong kind": sub("kind: DataOwner", "kind: BenchmarkOwner"),
    "no kind": drop("kind: DataOwner"),
    "kind in lower case": sub("kind: DataOwner", "kind: dataowner"),
    # -- server
    "no server": sub("server:\n  url: http://127.0.0.1:9\n  token_env: MEDPERF_TOKEN\n", ""),
    "server as a string": sub("server:\n  url: http://127.0.0.1:9\n  token_env: MEDPERF_TOKEN\n",
                              "server: http://127.0.0.1:9\n"),
    "no server url": drop("  url: http://127.0.0.1:9"),
    "server url not a url": sub("url: http://127.0.0.1:9", "url: my server"),
    "server url ftp": sub("url: http://127.0.0.1:9", "url: ftp://127.0.0.1:9"),
    "server url a number": sub("url: http://127.0.0.1:9", "url: 8000"),
    "token in the manifest": sub("  token_env: MEDPERF_TOKEN", "  token: s3cret"),
    "token_env and token_file": sub("  token_env: MEDPERF_TOKEN", "  token_env: MEDPERF_TOKEN\n  token_file: t.txt"),
    "no token source": drop("  token_env: MEDPERF_TOKEN"),
    "token_env empty": sub("token_env: MEDPERF_TOKEN", 'token_env: ""'),
    "unknown server key": sub("  token_env: MEDPERF_TOKEN", "  token_env: MEDPERF_TOKEN\n  verify: false"),
    # -- datasets
    "no datasets": sub(GOOD[GOOD.index("datasets:"):], ""),
    "datasets a mapping": sub("datasets:\n  - name: mytestdata", "datasets:\n  name: mytestdata"),
    "datasets a string": GOOD[:GOOD.index("datasets:")] + "datasets: mytestdata\n",
    "dataset without name": drop("  - name: mytestdata").replace("    description:", "  - description:", 1),
    "empty name": sub("name: mytestdata", 'name: ""'),
    "name a number": sub("name: mytestdata", "name: 7"),
    "name too long": sub("name: mytestdata", "name: " + "n" * 300),
    "description a mapping": sub("description: A tutorial dataset", "description: {a: b}"),
    "location a list": sub("location: My machine", "location: [a, b]"),
    "two datasets with one name": GOOD + GOOD[GOOD.index("  - name: mytestdata"):GOOD.index("    benchmarks:")],
    "no data_path": drop("    data_path: raw/images"),
    "data_path missing on disk": sub("data_path: raw/images", "data_path: raw/nowhere"),
    "labels_path missing on disk": sub("labels_path: raw/labels", "labels_path: raw/labelz"),
    "data_path a file": sub("data_path: raw/images", "data_path: raw/labels/labels.csv"),
    "data_path absolute missing": sub("data_path: raw/images", "data_path: /nonexistent/medperf/images"),
    "data_path a number": sub("data_path: raw/images", "data_path: 12"),
    "unknown dataset key (typo)": sub("    data_path: raw/images", "    data_pth: raw/images"),
    "state unknown": sub("state: operational", "state: done"),
    "state a number": sub("state: operational", "state: 3"),
    "state MedPerf's OPERATION": sub("state: operational", "state: OPERATION"),
    "no prepare_with": drop("    prepare_with: {benchmark: chestxray}"),
    "prepare_with both": sub("{benchmark: chestxray}", "{benchmark: chestxray, container: 1}"),
    "prepare_with empty": sub("{benchmark: chestxray}", "{}"),
    "prepare_with mlcube key": sub("{benchmark: chestxray}", "{mlcube: 1}"),
    "prepare_with a string": sub("{benchmark: chestxray}", "chestxray"),
    "consent a string": sub("    consent:\n      statistics: true", "    consent: yes please"),
    "consent statistics a string": sub("statistics: true", "statistics: sure"),
    "consent unknown key": sub("statistics: true", "statistics: true\n      predictions: true"),
    # -- benchmarks
    "benchmarks a mapping": sub(BENCH, "        benchmark: chestxray\n").replace("        association", "        association"),
    "benchmark entry without benchmark": sub(BENCH + "        association: approved\n",
                                             "      - association: approved\n"),
    "association unknown": sub("association: approved", "association: maybe"),
    "models a string": sub("models: all", "models: some"),
    "models a mapping": sub("models: all", "models: {a: 1}"),
    "results unknown": sub("results: submitted", "results: done"),
    "ignore_model_errors a string": sub("ignore_model_errors: false", "ignore_model_errors: nope"),
    "unknown benchmark key": sub("results: submitted", "results: submitted\n        priority: 1"),
    "unknown top-level key": GOOD + "extra: 1\n",
    # -- templates
    "undefined env": sub("url: http://127.0.0.1:9", "url: {{ env.MEDPERF_NOWHERE_SET }}"),
    "undefined vars": sub("location: My machine", "location: {{ vars.site }}"),
    "template syntax": sub("location: My machine", "location: {{ vars.site "),
    "unclosed block": sub("location: My machine", "location: {% if true %}x"),
    "unknown filter": sub("location: My machine", "location: {{ 'x' | nosuchfilter }}"),
    "template division by zero": sub("location: My machine", "location: {{ 1 / 0 }}"),
    "template renders bad YAML": sub("location: My machine", "location: {{ '[unclosed' }}"),
    "template calls nothing": sub("location: My machine", "location: {{ nothing() }}"),
    "template renders an empty file": "{% if false %}\n" + GOOD + "{% endif %}\n",
    # -- several documents
    "second document invalid": GOOD + "---\n" + sub("state: operational", "state: done"),
    "second document another server": GOOD + "---\n" + sub("http://127.0.0.1:9", "http://127.0.0.1:10").replace(
        "name: mytestdata", "name: other"),
}



def write_case(root, name: str, content: str | bytes):
    (root / "raw" / "images").mkdir(parents=True, exist_ok=True)
    (root / "raw" / "labels").mkdir(parents=True, exist_ok=True)
    (root / "raw" / "labels" / "labels.csv").write_text("Image ID,Label\n")
    path = root / "manifest.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60, len(CASES)


def test_the_good_manifest_is_good(tmp_path):
    from runner.load import load
    from runner.validate import validate

    path = write_case(tmp_path, "good", GOOD)
    validate(load([path], environ={}))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_manifest_exits_1_with_file_line_and_hint(case, tmp_path):
    from runner.errors import ManifestError
    from runner.load import load
    from runner.validate import validate

    path = write_case(tmp_path, case, CASES[case])
    out, err = io.StringIO(), io.StringIO()
    code = main(["plan", str(path), "--state-dir", str(tmp_path / "state")], stdout=out, stderr=err,
                stdin=io.StringIO(""), environ={"MEDPERF_TOKEN": "t", "PATH": "/usr/bin"})
    text = err.getvalue()
    assert code == 1, f"{case}: exit {code}\n{out.getvalue()}\n{text}"
    assert no_traceback(text), text
    assert re.search(rf"{re.escape(str(path))}:\d+", text) or re.search(r"manifest\.yaml:\d+", text), text
    with pytest.raises(ManifestError) as info:  # the manifest's fault, said as such (not a crash, not the state's)
        validate(load([path], environ={"MEDPERF_TOKEN": "t"}))
    assert info.value.hint, f"{case}: no hint in {info.value}"
    assert not (tmp_path / "state" / "ledger.jsonl").exists()


@pytest.mark.parametrize("case", ["binary file", "empty file", "huge file", "alias bomb", "wrong apiVersion"])
def test_bad_manifest_through_the_console_script(case, tmp_path):
    path = write_case(tmp_path, case, CASES[case])
    r = subprocess.run([*cli_command(), "plan", str(path), "--state-dir", str(tmp_path / "state")],
                       capture_output=True, text=True, timeout=60, env={"MEDPERF_TOKEN": "t", "PATH": "/usr/bin"})
    assert r.returncode == 1 and r.stdout == "", r.stdout + r.stderr
    assert no_traceback(r.stderr) and re.search(r"manifest\.yaml:\d+", r.stderr), r.stderr


def test_missing_manifest_and_empty_folder(tmp_path):
    for target in (tmp_path / "nowhere.yaml", tmp_path):
        err = io.StringIO()
        code = main(["plan", str(target)], stdout=io.StringIO(), stderr=err, stdin=io.StringIO(""), environ={})
        assert code == 1 and no_traceback(err.getvalue()) and str(target) in err.getvalue(), err.getvalue()


def test_bad_values_files(tmp_path):
    path = write_case(tmp_path, "good", sub("location: My machine", "location: {{ vars.site }}"))
    for name, text in {"syntax.yaml": "site: [\n", "list.yaml": "- a\n"}.items():
        (tmp_path / name).write_text(text)
        err = io.StringIO()
        code = main(["plan", str(path), "--values", str(tmp_path / name)], stdout=io.StringIO(), stderr=err,
                    stdin=io.StringIO(""), environ={"MEDPERF_TOKEN": "t"})
        assert code == 1 and no_traceback(err.getvalue()) and name in err.getvalue(), err.getvalue()


# The line named must be the offending one (not just any line): the marker's line in the case's text.
LINE_OF = {
    "wrong apiVersion": "medperf-apply/v2", "wrong kind": "BenchmarkOwner", "server url not a url": "my server",
    "unknown server key": "verify:", "empty name": 'name: ""', "name too long": "nnnn", "state unknown": "state: done",
    "unknown dataset key (typo)": "data_pth", "data_path missing on disk": "raw/nowhere",
    "labels_path missing on disk": "raw/labelz", "association unknown": "maybe", "results unknown": "results: done",
    "unknown benchmark key": "priority", "unknown top-level key": "extra:", "consent unknown key": "predictions",
    "tab indentation": "\tlocation", "duplicate key": "state: registered", "nul byte": "\x00", "control character": "\x07",
    "undefined vars": "vars.site", "undefined env": "MEDPERF_NOWHERE_SET", "template division by zero": "1 / 0",
    "unknown filter": "nosuchfilter", "second document invalid": "state: done",
}


@pytest.mark.parametrize("case", list(LINE_OF))
def test_the_line_named_is_the_offending_line(case, tmp_path):
    text = CASES[case]
    marker = LINE_OF[case]
    line = text[:text.rindex(marker)].count("\n") + 1
    path = write_case(tmp_path, case, text)
    err = io.StringIO()
    main(["plan", str(path), "--state-dir", str(tmp_path / "state")], stdout=io.StringIO(), stderr=err,
         stdin=io.StringIO(""), environ={"MEDPERF_TOKEN": "t"})
    assert re.search(rf"manifest\.yaml:{line}\b", err.getvalue()), (line, err.getvalue())
