"""The Slurm job's entry point (internal): `python -m runner.clients.slurm_task JOB_DIR MARKER` runs the task that
SlurmRunner wrote to JOB_DIR/task.json with DockerRunner on this node (the same sandbox as the docker executor) and
writes how it ended to JOB_DIR/result.json. SIGTERM (scancel, a time limit, preemption) stops the container."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from runner.clients import NOT_SHARED_EXIT
from runner.clients.containers import DockerRunner
from runner.container_spec import ContainerSpec
from runner.errors import ContainerError, Interrupted, MedperfApplyError
from runner.journal import write_atomic


def main(argv: list[str]) -> int:
    """Run the task of argv[0] (a job folder) if its marker is argv[1]; return the job's exit status."""
    job_dir, marker = Path(argv[0]), argv[1]
    try:
        shared = (job_dir / "marker").read_text(encoding="utf-8").strip() == marker
    except OSError:
        shared = False
    if not shared:
        print(f"medperf-apply: {job_dir} on node {os.environ.get('SLURMD_NODENAME', '?')} does not hold this "
              "job's marker: the state dir is not on a filesystem this node shares", file=sys.stderr)
        return NOT_SHARED_EXIT
    job_id = os.environ.get("SLURM_JOB_ID", "")
    doc = json.loads((job_dir / "task.json").read_text(encoding="utf-8"))

    def stop(signum, frame) -> None:  # scancel / time limit / preemption: the container is stopped and removed
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    result: dict = {"job_id": job_id, "ok": False}
    status = 1
    try:
        import docker

        # A client of our own: a DockerRunner that builds one removes the state dir's "orphan" containers, which
        # on a cluster are the other jobs' running tasks.
        client = docker.from_env(timeout=120)
        runner = DockerRunner(Path(doc["cache_dir"]), client=client, gpus=doc.get("gpus"),
                              shm_size=doc.get("shm_size"), timeout=doc.get("timeout"),
                              inactivity_timeout=doc.get("inactivity_timeout"))
        spec = ContainerSpec.from_record(doc["record"], schema_checked=True)  # SlurmRunner wrote it from a spec
        volumes = {k: Path(v) for k, v in doc["volumes"].items()}
        run = runner.run_task(spec, doc["task"], volumes, log_path=Path(doc["log_path"]))
        result.update(ok=True, duration_s=run.duration_s)
        status = 0
    except (Interrupted, KeyboardInterrupt) as e:
        result["error"] = {"type": "Interrupted", "message": getattr(e, "message", "") or "stopped by a signal"}
        status = 143
    except ContainerError as e:
        result["error"] = {"type": type(e).__name__, "message": e.message, "exit_code": e.container_exit_code,
                           "last_lines": list(e.last_lines)}
        status = e.container_exit_code if isinstance(e.container_exit_code, int) and 0 < e.container_exit_code < 256 \
            else 1
    except MedperfApplyError as e:
        result["error"] = {"type": type(e).__name__, "message": str(e)}
    except Exception as e:  # noqa: BLE001 - reported to the submitter, which turns it into our error
        result["error"] = {"type": type(e).__name__, "message": f"{type(e).__name__}: {e}"}
    write_atomic(job_dir / "result.json", json.dumps(result).encode())
    if not result["ok"]:
        print(f"medperf-apply: {doc['task']} failed: {result['error']['message']}", file=sys.stderr)
    return status


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # result.json is written (atomically) and the output flushed: skip the interpreter's teardown (the Docker SDK's
    # connection pools, the log thread), so the job ends, and its node is free for the next one, ~0.1 s sooner.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
