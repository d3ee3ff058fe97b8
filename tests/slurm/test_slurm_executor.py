"""The Slurm executor for real: the cluster of .ci/services.sh (slurmctld, two one-CPU slurmd), the real Docker
engine running the example chest X-ray containers, the real registry on loopback, medperf-apply run in-process or
as a process (to interrupt or kill it).

One site is taken through its life in order (the file runs on one pytest worker, --dist loadfile), so that each
container task is paid for once: the tutorial, then models added to the benchmark one test at a time. Last, a
state dir the nodes do not share (its blocker jobs hold both nodes: here, never beside the tests above).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from runner.cli import main
from runner.clients.slurm import SlurmRunner
from runner.container_spec import ContainerSpec
from runner.errors import SharedStateError
from runner.model import RuntimeSpec
from tests.support.images import COMPONENTS, require_images

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "manifests" / "chestxray-tutorial.yaml"
FAILING_IMAGE = "medperf-apply/test-failing-model:latest"
RUNTIME = "runtime:\n  executor: slurm\n  slurm: {partition: debug, time_limit: 10m}\n"

SECOND_DATASET = """\
  - name: otherdata                 # a second dataset, prepared at the same time as the first
    data_path: ../medperf_tutorial/other_raw_data/images
    labels_path: ../medperf_tutorial/other_raw_data/labels
    prepare_with: {benchmark: chestxray}
    state: operational
    consent: {statistics: true}
"""

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class Site:
    """The tutorial manifest with `executor: slurm`, toy data beside it, a seeded registry, a state dir."""

    def __init__(self, root: Path, srv, env: dict):
        self.root, self.srv, self.env = root, srv, env
        self.manifest = root / "manifests" / TUTORIAL.name
        self.state_dir = root / "state"

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv, str(self.manifest), "--state-dir", str(self.state_dir)], stdout=out, stderr=err,
                    stdin=io.StringIO(""), environ=self.env)
        return code, out.getvalue(), err.getvalue()

    def spawn(self, *argv: str) -> tuple[subprocess.Popen, Path]:
        """medperf-apply as a process of its own (its output in a file), to interrupt or kill it."""
        log = self.root / f"apply-{time.monotonic_ns()}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "runner.cli", *argv, str(self.manifest), "--state-dir",
                                     str(self.state_dir)], stdout=f, stderr=subprocess.STDOUT, env=self.env,
                                    stdin=subprocess.DEVNULL)
        return proc, log

    def api(self, email: str, method: str, path: str, body=None):
        r = requests.request(method, f"{self.srv.api}/{path}", json=body, headers=self.srv.headers(email), timeout=30)
        assert r.status_code < 300, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    def results(self) -> dict[int, dict]:
        from tests.support.server import TESTDO

        return {r["model"]: r for r in self.api(TESTDO, "GET", "me/results/?limit=500")["results"]}

    def ledger(self) -> list[dict]:
        path = self.state_dir / "ledger.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def add_model(self, name: str, record: dict, *, priority: int = 0) -> int:
        """As the model owner: the model and its association request; the benchmark owner approves it."""
        from tests.support.server import TESTBO, TESTMO

        container = {k: record[k] for k in ("container_config", "parameters_config", "image_hash",
                                            "additional_files_tarball_url", "additional_files_tarball_hash")}
        model = self.api(TESTMO, "POST", "models/", {"name": name, "type": "CONTAINER", "state": "OPERATION",
                                                      "container": {**container, "name": name, "state": "OPERATION"}})
        self.api(TESTMO, "POST", "models/benchmarks/", {"model": model["id"], "benchmark": 1,
                                                         "approval_status": "PENDING", "metadata": {}})
        self.api(TESTBO, "PUT", f"models/{model['id']}/benchmarks/1/", {"approval_status": "APPROVED",
                                                                         **({"priority": priority} if priority else {})})
        return model["id"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, cluster, docker_client):
    require_images()
    from tests.support.server import TESTDO, live_server

    root = tmp_path_factory.mktemp("slurm-site")
    (root / "manifests").mkdir()
    text = TUTORIAL.read_text()
    (root / "manifests" / TUTORIAL.name).write_text(text.replace("datasets:\n", RUNTIME + "datasets:\n", 1)
                                                   + SECOND_DATASET)
    for folder, cases, seed in (("sample_raw_data", 24, 0), ("other_raw_data", 12, 1)):
        subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out",
                        str(root / "medperf_tutorial" / folder), "--cases", str(cases), "--seed", str(seed)],
                       check=True, capture_output=True)
    with live_server(components=COMPONENTS) as srv:
        env = {**os.environ, **cluster.env, "MEDPERF_SERVER": srv.url, "MEDPERF_TOKEN": srv.tokens[TESTDO]}
        env.pop("NO_COLOR", None)
        yield Site(root, srv, env)


def _linear(name_suffix: str, *, sleep_s: float = 0) -> dict:
    """The tutorial's second model, optionally taking sleep_s longer in infer (a long model, to act meanwhile)."""
    record = json.loads(COMPONENTS.read_text())["second_model"]
    config = json.loads(json.dumps(record["container_config"]))
    if sleep_s:
        infer = config["tasks"]["infer"]["run_args"]
        infer["command"] = ["sh", "-c", f"sleep {sleep_s:g}; exec " + " ".join(infer["command"])]
    return {**record, "container_config": config,
            "parameters_config": {**record["parameters_config"], "variant": name_suffix}}


def _new(cluster, before: set[str], task: str | None = None) -> list:
    """Our jobs (medperf-<task>-<key>) that ended since `before`, of `task` when given."""
    return [j for j in cluster.finished() if j.job_id not in before and j.name.startswith("medperf-")
            and (task is None or j.name.split("-")[1] == task)]


def _known(cluster) -> set[str]:
    return {j.job_id for j in cluster.finished()} | {q[0] for q in cluster.queue()}


def _wait_running(cluster, before: set[str], task: str, proc: subprocess.Popen, log: Path) -> tuple[str, str]:
    """The (id, name) of the first new job of `task` that runs, while the process lives."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for job_id, name, state in cluster.queue():
            if job_id not in before and name.split("-")[1] == task and state == "RUNNING":
                return job_id, name
        assert proc.poll() is None, f"medperf-apply ended ({proc.returncode}) before a {task} job ran:\n" + \
            log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"no {task} job ran within 120 s")


def _wait_finished(cluster, job_id: str) -> object:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [j for j in cluster.finished() if j.job_id == job_id]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} is not in the job completion records")


def test_the_tutorial_runs_each_container_task_as_one_slurm_job_two_datasets_at_once(site, cluster):
    from tests.support.server import TESTBO, TESTDO

    before = _known(cluster)
    code, out, err = site.run("plan")
    assert code == 2, out + err
    assert "(local only; slurm partition debug; status reports)" in out  # prepare says where it runs
    assert "(runs on slurm partition debug)" in out  # so does the association's compatibility test

    code, out, err = site.run("apply", "--yes")
    assert code == 3, out + err
    by_name = {d["name"]: d for d in site.api(TESTDO, "GET", "me/datasets/")["results"]}
    ds = by_name["mytestdata"]
    assert ds["state"] == "OPERATION" and ds["generated_metadata"]["num_cases"] == 24
    assert by_name["otherdata"]["state"] == "OPERATION" and by_name["otherdata"]["generated_metadata"]["num_cases"] == 12
    prepares = _new(cluster, before, "prepare")
    # at once: both nodes, each started before the other ended (jobcomp has whole seconds; a job that waited for
    # the other would have gone to the node the other left, n1)
    assert len(prepares) == 2 and {j.node for j in prepares} == {"n1", "n2"}, prepares
    assert max(j.start for j in prepares) <= min(j.end for j in prepares), prepares
    out_, err_ = io.StringIO(), io.StringIO()
    assert main(["association", "approve", "--benchmark", "chestxray", "--dataset", str(ds["id"]), "--state-dir",
                 str(site.root / "bo-state")], stdout=out_, stderr=err_, stdin=io.StringIO(""),
                environ={**site.env, "MEDPERF_TOKEN": site.srv.tokens[TESTBO]}) == 0, err_.getvalue()
    code, out, err = site.run("apply", "--yes")
    assert code == 0, out + err

    results = site.results()
    assert sorted(results) == [1, 2] and all(r["finalized"] for r in results.values())
    assert all(set(r["results"]) == {"Accuracy", "AUC"} for r in results.values())
    jobs = _new(cluster, before)
    assert Counter(j.name.split("-")[1] for j in jobs) == {"prepare": 2, "sanity_check": 2, "statistics": 2,
                                                          "infer": 2, "evaluate": 2}, jobs
    assert {j.state for j in jobs} == {"COMPLETED"} and {j.node for j in jobs} <= {"n1", "n2"}
    assert len({j.name for j in jobs}) == len(jobs)  # every task once
    # the task's log is in the state dir, as with the docker executor
    assert (site.state_dir / "datasets" / str(ds["id"]) / "logs" / "statistics.log").stat().st_size > 0


def test_models_of_a_benchmark_run_at_once_on_both_nodes(site, cluster):
    a = site.add_model("parallel_a", _linear("a", sleep_s=3))
    b = site.add_model("parallel_b", _linear("b", sleep_s=3))
    before = _known(cluster)
    code, out, err = site.run("apply", "--yes", "--parallel", "2")
    assert code == 0, out + err
    results = site.results()
    assert results[a]["finalized"] and results[b]["finalized"]
    infers = _new(cluster, before, "infer")
    assert len(infers) == 2, infers
    assert {j.node for j in infers} == {"n1", "n2"}
    assert max(j.start for j in infers) < min(j.end for j in infers), infers  # they overlapped (3 s each at least)


def test_a_killed_run_leaves_its_job_which_the_next_run_adopts_instead_of_submitting_again(site, cluster):
    m = site.add_model("killed_meanwhile", _linear("k", sleep_s=6))
    before = _known(cluster)
    proc, log = site.spawn("apply", "--yes")
    job_id, name = _wait_running(cluster, before, "infer", proc, log)
    proc.kill()  # SIGKILL: no handler runs, the job is left behind
    proc.wait(30)
    assert cluster.state(job_id) == "RUNNING"

    code, out, err = site.run("apply", "--yes")
    assert code == 0, out + err + log.read_text()
    assert site.results()[m]["finalized"] and set(site.results()[m]["results"]) == {"Accuracy", "AUC"}
    _wait_finished(cluster, job_id)
    by_name = Counter(j.name for j in _new(cluster, before))
    assert by_name[name] == 1, by_name  # the infer ran once: adopted, not submitted again
    assert all(n == 1 for n in by_name.values()), by_name


def test_an_interrupt_cancels_the_jobs_in_flight_and_sends_nothing_more(site, cluster):
    models = [site.add_model(f"interrupted_{i}", _linear(f"i{i}", sleep_s=8)) for i in (1, 2)]
    before = _known(cluster)
    proc, log = site.spawn("apply", "--yes")  # the two models at once, in worker threads (one job each)
    first, _ = _wait_running(cluster, before, "infer", proc, log)
    second, _ = _wait_running(cluster, before | {first}, "infer", proc, log)
    sent = len(site.ledger())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130, log.read_text()
    assert [_wait_finished(cluster, j).state for j in (first, second)] == ["CANCELLED", "CANCELLED"]
    after = site.ledger()[sent:]
    assert all(e["method"] == "PUT" and list(e["body"].values())[0] == {"execution_status": "interrupted"}
               for e in after), after
    results = site.results()
    assert not any(results[m]["finalized"] or results[m].get("results") for m in models)
    assert "interrupted" in log.read_text()


def test_a_job_cancelled_from_outside_is_our_error_naming_the_job_and_its_state(site, cluster):
    before = _known(cluster)  # the interrupted models of the test before run again: cancel one from outside
    proc, log = site.spawn("apply", "--yes")
    job_id, _ = _wait_running(cluster, before, "infer", proc, log)
    subprocess.run(["scancel", job_id], check=True, env={**os.environ, **cluster.env})
    assert proc.wait(120) == 1, log.read_text()
    text = log.read_text()
    assert f"Slurm job {job_id}" in text and "CANCELLED" in text, text


def test_a_failing_model_is_a_failed_job_with_its_id_state_exit_code_and_last_lines(site, cluster, docker_client):
    dockerfile = b"FROM medperf-apply/python-base:bookworm\nCMD [\"python3\", \"-c\", " \
                 b"\"import sys; print('no weights here'); sys.exit(1)\"]\n"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=FAILING_IMAGE, rm=True)
    failing = {"container_config": {"container_type": "DockerImage", "image": FAILING_IMAGE, "tasks": {"infer": {
        "input_volumes": {"data_path": {"mount_path": "/mlcommons/volumes/data", "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": "/mlcommons/volumes/predictions", "type": "directory"}}}}},
        "parameters_config": None, "image_hash": image.id,
        "additional_files_tarball_url": "", "additional_files_tarball_hash": ""}
    bad = site.add_model("always_fails", failing, priority=10)
    before = _known(cluster)
    code, out, err = site.run("apply", "--yes")
    assert code == 1, out + err
    (job,) = [j for j in _new(cluster, before, "infer") if j.state != "COMPLETED"]
    assert (job.state, job.exit_code) == ("FAILED", "1:0")
    line = next(ln for ln in out.splitlines() if f"Slurm job {job.job_id}" in ln)
    assert "FAILED" in line and "exit code 1" in line and "no weights here" in line, line
    assert not site.results()[bad]["finalized"]


# -- the state dir on a filesystem the nodes share (in this file: its blocker jobs hold both nodes, which the
# tests above must not meet on another pytest worker)


def _sbatch(cluster, *args: str) -> str:
    return subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **cluster.env}).stdout.strip().split(";")[0]


def _until(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_state_dir_the_node_does_not_share_is_reported_as_such(tmp_path, cluster):
    require_images()
    spec = ContainerSpec.from_record(json.loads(COMPONENTS.read_text())["second_model"])
    # Both nodes busy, so the task's job waits while its marker is swapped for another filesystem's.
    blockers = [_sbatch(cluster, "-w", node, "--job-name=blocker", "-o", "/dev/null", "--wrap", "sleep 120")
                for node in ("n1", "n2")]
    try:
        _until(lambda: all(cluster.state(b) == "RUNNING" for b in blockers), "the blockers to run")
        runner = SlurmRunner(tmp_path / "slurm", tmp_path / "containers", RuntimeSpec(executor="slurm"),
                             environ={**os.environ, **cluster.env}, poll_s=0.2)
        (tmp_path / "data").mkdir()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                runner.run_task(spec, "infer", {"data_path": tmp_path / "data", "output_path": tmp_path / "pred"},
                                log_path=tmp_path / "infer.log")
            except BaseException as e:  # noqa: BLE001 - checked below
                failures.append(e)

        t = threading.Thread(target=run)
        t.start()
        _until(lambda: list((tmp_path / "slurm").glob("*/job.json")), "the job to be submitted")
        (marker,) = (tmp_path / "slurm").glob("*/marker")
        marker.write_text("what-another-filesystem-holds")
    finally:
        subprocess.run(["scancel", *blockers], env={**os.environ, **cluster.env}, check=False)
    t.join(120)
    assert not t.is_alive()
    (e,) = failures
    assert isinstance(e, SharedStateError), e
    assert "not on a filesystem the nodes share" in str(e) and str(marker.parent) in str(e)
    assert "on node n" in str(e)
