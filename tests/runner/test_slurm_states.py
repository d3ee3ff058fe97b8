"""How SlurmRunner reads Slurm's answers, with stand-ins for its commands on PATH (the real cluster: tests/slurm):
a job that timed out, was preempted, or lost its node becomes our error with the job id, its state, the exit code,
the node and the task's last log lines; a job the controller forgot is read from accounting (sacct)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from runner.clients.slurm import SlurmRunner
from runner.container_spec import ContainerSpec
from runner.errors import SlurmJobError, SlurmUnavailable
from runner.model import RuntimeSpec, SlurmSpec

RECORD = {"name": "m", "image_hash": "sha256:" + "a" * 64, "container_config": {
    "container_type": "DockerImage", "image": "example/model:1", "tasks": {"infer": {
        "input_volumes": {"data_path": {"mount_path": "/data", "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": "/out", "type": "directory"}}}}}}


def _commands(bin_dir: Path, *, scontrol: str, sacct: str = "", log_lines: str = "", job: str = "") -> None:
    """sbatch answers job 42 (and writes the task's log as the job would, then runs `job` with $dir the job's folder);
    squeue knows no job; scontrol and sacct print what is given; every call is appended to calls.log."""
    bin_dir.mkdir()
    calls = bin_dir / "calls.log"
    scripts = {
        "sbatch": f'echo "sbatch $*" >> {calls}\nlog=$(python3 -c "import json,sys; '
                  f'print(json.load(open(sys.argv[1]))[\'log_path\'])" "$(dirname "${{@: -1}}")/task.json")\n'
                  f"mkdir -p \"$(dirname \"$log\")\"\nprintf '{log_lines}' > \"$log\"\n"
                  f'dir=$(dirname "${{@: -1}}")\n{job}\necho \'42;cluster\'',
        "squeue": f'echo "squeue $*" >> {calls}',
        "scontrol": f'echo "scontrol $*" >> {calls}\n{scontrol}',
        "sacct": f'echo "sacct $*" >> {calls}\n{sacct}',
        "scancel": f'echo "scancel $*" >> {calls}',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, runtime: RuntimeSpec | None = None, poll_s: float = 0.01):
    runner = SlurmRunner(tmp_path / "jobs", tmp_path / "cache", runtime or RuntimeSpec(executor="slurm"),
                         environ={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}, poll_s=poll_s,
                         max_poll_s=poll_s)
    (tmp_path / "data").mkdir(exist_ok=True)
    return runner.run_task(ContainerSpec.from_record(RECORD), "infer", {"data_path": tmp_path / "data",
                                                                        "output_path": tmp_path / "out"},
                           log_path=tmp_path / "logs" / "model.log")


@pytest.mark.parametrize(("state", "exit_code", "reason"), [("TIMEOUT", "0:15", "TimeLimit"),
                                                            ("PREEMPTED", "0:15", "None"),
                                                            ("NODE_FAIL", "0:0", "NodeDown")])
def test_a_job_that_did_not_end_well_is_our_error_with_its_id_state_node_and_last_lines(tmp_path, state, exit_code,
                                                                                        reason):
    _commands(tmp_path / "bin", log_lines="loading weights\\nbatch 1 of 9\\n",
              scontrol=f"echo 'JobId=42 JobName=x JobState={state} Reason={reason} ExitCode={exit_code} NodeList=n2'")
    with pytest.raises(SlurmJobError) as caught:
        _run(tmp_path)
    e = caught.value
    assert (e.job_id, e.state, e.node) == ("42", state, "n2")
    assert f"Slurm job 42 running infer of example/model:1 ended {state}" in str(e)
    assert e.last_lines[-1] == "batch 1 of 9" and "batch 1 of 9" in e.explain()
    assert e.container_exit_code == (143 if exit_code == "0:15" else 0)


def test_a_job_the_controller_forgot_is_read_from_accounting(tmp_path):
    _commands(tmp_path / "bin", scontrol="echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
              sacct="echo '42|OUT_OF_MEMORY|0:125|n1'")
    with pytest.raises(SlurmJobError) as caught:
        _run(tmp_path)
    assert (caught.value.state, caught.value.node) == ("OUT_OF_MEMORY", "n1")


def test_the_job_asks_for_what_the_manifest_says_and_gets_only_the_listed_environment(tmp_path):
    _commands(tmp_path / "bin", scontrol="echo 'JobId=42 JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 "
                                         "NodeList=n1'")
    runtime = RuntimeSpec(gpus=2, executor="slurm", slurm=SlurmSpec(partition="gpu", account="rad", time_limit="4h",
                                                                     extra_args=("--qos=normal",)))
    with pytest.raises(SlurmJobError):
        _run(tmp_path, runtime)
    (sbatch,) = [c for c in (tmp_path / "bin" / "calls.log").read_text().splitlines() if c.startswith("sbatch")]
    for option in ("--partition=gpu", "--account=rad", "--time=240", "--gres=gpu:2", "--qos=normal", "--export=ALL",
                   "--comment=medperf-apply:", "--job-name=medperf-infer-"):
        assert option in sbatch, (option, sbatch)
    (task,) = (tmp_path / "jobs").glob("*/task.json")
    assert json.loads(task.read_text())["gpus"] == 2


def test_no_slurm_commands_is_a_clear_error(tmp_path):
    runner = SlurmRunner(tmp_path / "jobs", tmp_path / "cache", RuntimeSpec(executor="slurm"),
                         environ={"PATH": str(tmp_path)})
    with pytest.raises(SlurmUnavailable, match="squeue is not installed"):
        runner.run_task(ContainerSpec.from_record(RECORD), "infer", {"data_path": tmp_path, "output_path": tmp_path},
                        log_path=tmp_path / "x.log")


def test_a_job_that_wrote_its_outcome_is_seen_ended_at_once_not_at_the_next_poll(tmp_path):
    """Slurm is asked seldom (here: every 30 s) but the job's result.json is watched: the job that wrote it (and
    then ended) is seen ended within a fraction of a second, and its task counts as done."""
    _commands(tmp_path / "bin", job="""(sleep 1; printf '{"job_id": "42", "ok": true}' > "$dir/result.json") >/dev/null 2>&1 &""",
              scontrol='if [ -e "$(ls -d ' + str(tmp_path / "jobs") + '/*/result.json 2>/dev/null | head -1)" ]; '
                       "then s=COMPLETED; else s=RUNNING; fi; "
                       "echo \"JobId=42 JobState=$s Reason=None ExitCode=0:0 NodeList=n1\"")
    started = time.monotonic()
    run = _run(tmp_path, poll_s=30)
    assert run.exit_code == 0
    assert time.monotonic() - started < 10  # the next poll of Slurm would have come after 30 s
