"""What the documents say about skips, flags and files is what the code does: the MEDPERF_REQUIRE_* flags, the
skip-or-fail rule of tests/conftest.py, no document citing a file outside the repository, and the two-benchmarks
template's README commands working against a server seeded as `make demo` seeds it."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from server.loopback import live_server
from server.seed import SECOND_BENCHMARK, TESTDO
from tests.conftest import _unavailable
from tests.docs.readme import README, REPO, commands

FLAG = re.compile(r"MEDPERF_REQUIRE_[A-Z]+")
DOCS = (README, REPO / "DEVELOPERS.md")


def flags_in(*paths: Path) -> set[str]:
    return {f for p in paths for f in FLAG.findall(p.read_text(encoding="utf-8"))}


def test_the_flags_the_docs_name_are_those_the_tests_read_and_ci_and_make_test_set():
    read_by_tests = flags_in(*(p for p in (REPO / "tests").rglob("*.py") if "docs" not in p.parts))
    assert read_by_tests >= {"MEDPERF_REQUIRE_DOCKER", "MEDPERF_REQUIRE_POSTGRES", "MEDPERF_REQUIRE_REGISTRY",
                             "MEDPERF_REQUIRE_OIDC"}
    for doc in DOCS:
        assert flags_in(doc) == read_by_tests, f"{doc.name} names other flags than the tests read"
    assert flags_in(REPO / ".ci" / "run") == read_by_tests, "CI sets every flag"
    assert flags_in(REPO / "scripts" / "test.sh") == read_by_tests, "make test sets every flag it can"


def test_no_document_says_the_tests_skip_unless_a_flag_is_set():
    # they run whenever the service answers; the flag only turns "unavailable" into a failure
    for doc in (*DOCS, REPO / "Makefile", REPO / "setup.cfg"):
        text = " ".join(doc.read_text(encoding="utf-8").split())
        assert not re.search(r"skips? unless", text), f"{doc.name} says tests skip unless a flag is set"
    for doc in DOCS:
        text = " ".join(doc.read_text(encoding="utf-8").split())
        assert "runs whenever" in text and "answers" in text, f"{doc.name} does not say when the tests run"


def test_unavailable_skips_without_the_flag_and_fails_with_it(monkeypatch):
    monkeypatch.delenv("MEDPERF_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="set MEDPERF_REQUIRE_POSTGRES=1 to make this a failure"):
        _unavailable("PostgreSQL", "MEDPERF_REQUIRE_POSTGRES", "connection refused")
    monkeypatch.setenv("MEDPERF_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="required .* but unavailable: connection refused"):
        _unavailable("PostgreSQL", "MEDPERF_REQUIRE_POSTGRES", "connection refused")


def test_the_readme_quotes_make_tests_summary_line():
    script = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert "skipped: PostgreSQL (initdb not found: apt-get install postgresql)" in readme
    assert '"PostgreSQL (initdb not found: apt-get install postgresql)"' in script, "the README quotes the script"


def test_make_test_names_each_service_it_could_not_have():
    # no dockerd on PATH and nothing answering; only Docker asked for (the others are named as not asked for)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "NO_COLOR": "1", "MEDPERF_TEST_SERVICES": "docker"}
    if Path("/usr/local/bin/dockerd").exists() or Path("/usr/bin/dockerd").exists():
        pytest.skip("dockerd is on every PATH here")
    p = subprocess.run(["bash", "scripts/test.sh", "-p", "no:cacheprovider", "--collect-only", "-q",
                        "tests/docs/test_statements.py"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-8:] == [
        "test: skipped: Docker (dockerd not found: apt-get install docker.io)",
        "test: skipped: PostgreSQL (not in MEDPERF_TEST_SERVICES)",
        "test: skipped: image registry (not in MEDPERF_TEST_SERVICES)",
        "test: skipped: OpenID provider (not in MEDPERF_TEST_SERVICES)",
        "test: skipped: Slurm cluster (not in MEDPERF_TEST_SERVICES)",
        "test: skipped: Chromium (not in MEDPERF_TEST_SERVICES)",
        "test: skipped: nginx (not in MEDPERF_TEST_SERVICES)",
        "test: skipped: tmux (not in MEDPERF_TEST_SERVICES)",
    ], p.stderr
    assert "test_the_readme_quotes_make_tests_summary_line" in p.stdout, "pytest ran after the set-up"


OUTSIDE = re.compile(r"\.\./shared|/work/|\breference/|\bDESIGN\b|STYLE\.md|services-here|\(reference \d|reference \d\.\d")
SHIPPED = [README, REPO / "DEVELOPERS.md", REPO / "Makefile", REPO / ".ci" / "run", REPO / ".ci" / "services.sh",
           *sorted((REPO / "manifests").rglob("*.y*ml")), *sorted((REPO / "scripts").glob("*.sh")),
           *sorted((REPO / "schemas").glob("*.json"))]


@pytest.mark.parametrize("doc", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_document_cites_a_file_outside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    found = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, f"{doc.name} cites documents outside the repository: {found}"
    if doc.suffix == ".md":
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+:", target):
                assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which is not in the repository"


@pytest.fixture
def demo_like(tmp_path, monkeypatch):
    """The repository's manifests, the toy data where `make demo` generates it, a server seeded as the demo's."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "manifests", root / "manifests")
    for year, cases, seed in (("2024", 8, 1), ("2025", 6, 2)):
        subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out",
                        str(root / "medperf_tutorial" / "sites" / "north" / f"chest-{year}"), "--cases", str(cases),
                        "--seed", str(seed)], check=True, capture_output=True)
    monkeypatch.chdir(root)
    with live_server(second_benchmark=True) as srv:
        yield srv, root


def test_the_templates_readme_commands_work_as_written_after_the_demo(demo_like):
    srv, root = demo_like
    text = README.read_text(encoding="utf-8")
    block = text[text.index("### Templates"):]
    block = block[:block.index("\n## ")]
    shown = [c for c in commands(block) if c.program == "medperf-apply"]
    assert [c.args[0] for c in shown] == ["validate", "plan"], shown
    script = (REPO / "scripts" / "demo.sh").read_text(encoding="utf-8")
    assert "--second-benchmark" in script and 'sites=medperf_tutorial/sites/north' in script
    environ = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "MEDPERF_SERVER": srv.url,
               "MEDPERF_TOKEN": srv.tokens[TESTDO], "MEDPERF_APPLY_HOME": str(root / "state")}
    outputs = {}
    for c in shown:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(c.args), stdout=out, stderr=err, stdin=io.StringIO(""), environ=environ)
        outputs[c.args[0]] = (code, out.getvalue() + err.getvalue())
    code, text_out = outputs["validate"]
    assert code == 0 and "valid:" in text_out, text_out
    code, text_out = outputs["plan"]
    assert code == 2, text_out  # changes to make, no error: both benchmarks exist, the data is there
    assert "dataset south-chest-2024" in text_out and f"benchmark {SECOND_BENCHMARK}" in text_out
