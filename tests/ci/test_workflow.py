"""manifests/ci/reconcile.yml as shipped, its `run:` steps run as GitHub runs them (tests/ci/workflow.py) against a
live registry seeded with both benchmarks, `gh` replaced by a fake that keeps the pull request's comments: the
summary, one comment updated in place, a clear error for an empty secret, a long plan truncated, apply's gate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.loopback import live_server
from server.seed import TESTBO, TESTDO
from tests.ci.workflow import Contexts, load, run_job
from tests.containers.conftest import COMPONENTS, chestxray  # noqa: F401  (a fixture: the example images, built)

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = load(REPO / "manifests" / "ci" / "reconcile.yml")
MARKER = "<!-- medperf-apply-plan -->"
LIMIT = 65536  # GitHub's limit on a comment's body


@pytest.fixture(scope="module")
def server():
    with live_server(second_benchmark=True) as srv:
        yield srv


def make_data(folder: Path, cases: int = 6) -> None:
    subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out", str(folder),
                    "--cases", str(cases)], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A hospital's repository as the checkout step leaves it: this repository's manifests/ and their data."""
    work = tmp_path / "checkout"
    shutil.copytree(REPO / "manifests", work / "manifests")
    make_data(work / "medperf_tutorial" / "sample_raw_data")
    for year in ("2024", "2025"):
        make_data(work / "medperf_tutorial" / "sites" / "north" / f"chest-{year}")
    return work


@pytest.fixture
def gh(tmp_path) -> Path:
    """A bin folder with the fake `gh`; its state (comments, calls) in tmp_path/gh.json."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    fake = bin_dir / "gh"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} {REPO / 'tests' / 'ci' / 'fake_gh.py'} \"$@\"\n")
    fake.chmod(0o755)
    return bin_dir


def run(job: str, checkout: Path, gh: Path, server, *, event: str = "pull_request", secrets: dict | None = None,
        variables: dict | None = None):
    secrets = {"MEDPERF_SERVER": server.url, "MEDPERF_TOKEN": server.tokens[TESTDO], **(secrets or {})}
    variables = {
        "MEDPERF_APPLY_VENV": str(REPO / ".venv"),  # the documented input: a venv already holding medperf-apply
        "MEDPERF_APPLY_HOME": str(checkout.parent / "state"),  # the runner's persistent state dir
        **(variables or {}),
    }
    github = {"event_name": event, "token": "fake-token", "event": {"pull_request": {"number": 7}}}
    contexts = Contexts(secrets, variables, github)
    assert contexts.condition(WORKFLOW["jobs"][job]["if"], False), f"job {job} does not run on {event}"
    base = {"PATH": f"{gh}:/usr/local/bin:/usr/bin:/bin", "HOME": str(checkout.parent),
            "FAKE_GH_STATE": str(gh.parent / "gh.json"), "GITHUB_EVENT_NAME": event,
            "GITHUB_REPOSITORY": "hospital/medperf-site", "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_RUN_ID": "4242", "GITHUB_ACTIONS": "true", "CI": "true",
            **{k: os.environ[k] for k in ("DOCKER_HOST",) if k in os.environ}}  # the runner machine's engine
    return run_job(WORKFLOW, job, workdir=checkout, contexts=contexts, base_env=base)


def gh_state(gh: Path) -> dict:
    path = gh.parent / "gh.json"
    return json.loads(path.read_text()) if path.exists() else {"comments": [], "calls": []}


def test_the_jobs_follow_the_events():
    on = WORKFLOW["on"]
    assert {"pull_request", "push", "schedule", "workflow_dispatch"} <= set(on)
    for event, job in (("pull_request", "plan"), ("schedule", "apply"), ("push", "apply")):
        contexts = Contexts({}, {}, {"event_name": event})
        assert [j for j, spec in WORKFLOW["jobs"].items() if contexts.condition(spec["if"], False)] == [job]


def test_a_pull_request_gets_one_plan_comment_updated_in_place_and_a_summary(checkout, gh, server):
    first = run("plan", checkout, gh, server)
    assert not first.failed, first.output
    # both manifests, the template with its values file; the values file never read as a manifest
    found = first.step("Find the manifests").output
    assert "manifests/two-benchmarks.yaml --values manifests/values/two-benchmarks.yaml" in found
    assert "manifests/chestxray-tutorial.yaml" in found and "values/two-benchmarks.yaml\n" not in found.split(" ")[0]
    assert "valid:" in first.step("Validate (offline)").output
    summary = first.summary
    assert "### medperf-apply plan: what will run and what will be sent" in summary
    assert "dataset mytestdata" in summary and "dataset north-chest-2024" in summary
    assert "benchmark chestxray-external" in summary and "+ register" in summary and MARKER not in summary
    state = gh_state(gh)
    assert [c["method"] for c in state["calls"]] == ["GET", "POST"]
    assert state["calls"][1]["path"] == "repos/hospital/medperf-site/issues/7/comments"
    (comment,) = state["comments"]
    assert comment["body"].startswith(MARKER) and "dataset mytestdata" in comment["body"]
    assert "truncated" not in comment["body"]
    artifact = next(s for s in WORKFLOW["jobs"]["plan"]["steps"] if s.get("uses", "").startswith("actions/upload"))
    assert artifact["with"]["path"] == "plan.txt" and (checkout / "plan.txt").read_text() in comment["body"]

    second = run("plan", checkout, gh, server)  # another push to the pull request
    assert not second.failed, second.output
    state = gh_state(gh)
    assert [c["method"] for c in state["calls"]] == ["GET", "POST", "GET", "PATCH"]
    assert state["calls"][3]["path"] == f"repos/hospital/medperf-site/issues/comments/{comment['id']}"
    assert len(state["comments"]) == 1, "a second push updates the comment instead of adding one"
    assert "updated comment" in second.output


def test_each_side_reconciles_its_own_kind_with_its_own_token(checkout, gh, server):
    # the data owner's run (the default kind) never plans the benchmark owner's manifest with its token
    found = run("plan", checkout, gh, server).step("Find the manifests").output
    assert "chestxray-benchmark-owner.yaml" not in found and "chestxray-tutorial.yaml" in found
    # the benchmark owner's run: their manifest alone, planned with their token (nothing to decide yet: exit 0)
    result = run("plan", checkout, gh, server, secrets={"MEDPERF_TOKEN": server.tokens[TESTBO]},
                 variables={"MEDPERF_KIND": "BenchmarkOwner"})
    assert not result.failed, result.output
    found = result.step("Find the manifests").output
    assert "manifests/chestxray-benchmark-owner.yaml" in found and "chestxray-tutorial.yaml" not in found
    assert "benchmark chestxray" in result.summary


@pytest.mark.parametrize("missing", ["MEDPERF_SERVER", "MEDPERF_TOKEN"])
def test_an_empty_secret_fails_with_a_clear_message_before_anything_runs(checkout, gh, server, missing):
    for job, event in (("plan", "pull_request"), ("apply", "schedule")):
        result = run(job, checkout, gh, server, event=event, secrets={missing: ""})
        check = result.step("Check the settings")
        assert check.code == 1
        assert f"::error::{missing} is not set: add it under Settings > Secrets" in check.output
        assert "NoneType" not in result.output
        later = result.steps[result.steps.index(check) + 1:]
        assert all(s.code is None for s in later if s.uses is None and "always" not in s.name), result.steps
    assert gh_state(gh)["comments"] == [], "no comment without a plan"


def test_a_long_plan_is_truncated_in_the_comment_and_kept_whole_in_plan_txt(checkout, gh, server):
    tutorial = (checkout / "manifests" / "chestxray-tutorial.yaml").read_text()
    head, datasets = tutorial.split("datasets:\n", 1)
    many = "".join(datasets.replace("name: mytestdata", f"name: site-dataset-{i:03d}") for i in range(150))
    (checkout / "manifests" / "chestxray-tutorial.yaml").write_text(head + "datasets:\n" + many)
    result = run("plan", checkout, gh, server)
    assert not result.failed, result.output[-3000:]
    full = (checkout / "plan.txt").read_text()
    assert len(full) > LIMIT and "site-dataset-149" in full
    (comment,) = gh_state(gh)["comments"]
    assert len(comment["body"]) < LIMIT
    assert "truncated" in comment["body"] and "medperf-apply-plan" in comment["body"]
    assert "https://github.com/hospital/medperf-site/actions/runs/4242" in comment["body"]


def test_a_plan_error_is_a_red_job_after_the_comment_says_so(checkout, gh, server):
    (checkout / "manifests" / "chestxray-tutorial.yaml").write_text(
        (checkout / "manifests" / "chestxray-tutorial.yaml").read_text().replace("benchmark: chestxray\n",
                                                                                 "benchmark: no-such-bench\n"))
    result = run("plan", checkout, gh, server)
    assert result.step("Fail on a plan error").code == 1
    (comment,) = gh_state(gh)["comments"]
    assert "medperf-apply plan failed (exit 1)" in comment["body"]


def test_the_nightly_apply_registers_and_a_gate_is_a_warning_unless_asked(checkout, gh, server):
    # a site whose manifest only registers a dataset: no container needed, so the job runs here end to end
    (checkout / "manifests" / "two-benchmarks.yaml").unlink()
    text = (checkout / "manifests" / "chestxray-tutorial.yaml").read_text()
    head, _rest = text.split("    state: operational", 1)
    (checkout / "manifests" / "chestxray-tutorial.yaml").write_text(head + "    state: registered\n")
    result = run("apply", checkout, gh, server, event="schedule")
    assert not result.failed, result.output[-3000:]
    assert "### medperf-apply: converged" in result.summary and "register" in result.summary
    assert os.path.exists(checkout / "events.jsonl")
    assert (checkout.parent / "state").is_dir(), "the state dir is vars.MEDPERF_APPLY_HOME"
    again = run("apply", checkout, gh, server, event="schedule")
    assert not again.failed and "### medperf-apply: converged" in again.summary
    # exit 3 (a gate) is a warning unless vars.MEDPERF_FAIL_ON_GATE says otherwise: the step's own case
    apply = next(s for s in WORKFLOW["jobs"]["apply"]["steps"] if s.get("name") == "Apply")
    assert 'if [ "$FAIL_ON_GATE" = "true" ]' in apply["run"] and "::warning::" in apply["run"]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.usefixtures("chestxray")  # the example images, built when missing
def test_the_nightly_apply_stops_at_the_approval_gate_green_unless_asked(checkout, gh):
    # the tutorial for real (containers run): the first apply waits for the benchmark owner's approval (exit 3)
    (checkout / "manifests" / "two-benchmarks.yaml").unlink()
    with live_server(components=COMPONENTS) as srv:
        result = run("apply", checkout, gh, srv, event="schedule")
        assert not result.failed, result.output[-3000:]
        assert "::warning::medperf-apply: waiting at a gate" in result.step("Apply").output
        assert "### medperf-apply: waiting at a gate" in result.summary and "await approval" in result.summary
        strict = run("apply", checkout, gh, srv, event="schedule", variables={"MEDPERF_FAIL_ON_GATE": "true"})
        assert strict.step("Apply").code == 3
        assert "::error::medperf-apply: waiting at a gate" in strict.step("Apply").output
