"""The Slurm executor: each container task is a Slurm job (sbatch, polled with scontrol/sacct, scancel on an
interrupt) that runs the same sandboxed Docker task on a cluster node through runner.clients.slurm_task; the
task's files live under the state dir, which the nodes must share. Jobs a dead run left behind are adopted."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.clients import NOT_SHARED_EXIT, TaskRun
from runner.container_spec import ContainerSpec, normalize_gpus
from runner.errors import Interrupted, SharedStateError, SlurmJobError, SlurmUnavailable
from runner.journal import write_atomic
from runner.model import RuntimeSpec

IN_FLIGHT = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                       "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"})
# What the job gets from the submitter's environment (--export): the engine's address, a PATH; nothing else.
EXPORTED = ("PATH", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONFIG", "SLURM_CONF", "LANG",
            "HOME")
LAST_LINES = 20
# Waiting for a job: its files (the task's log, result.json) are looked at every WATCH_S (a stat each); Slurm is asked
# (scontrol, a process of ~10-30 ms of CPU, on the same cores as the jobs on a small cluster) first after POLL_S, then
# ever less often up to MAX_POLL_S, and every WATCH_S once the job wrote result.json (it is ending). A job that
# ended without writing it (killed, its node lost) is seen within MAX_POLL_S.
WATCH_S = 0.05
POLL_S = 0.25
MAX_POLL_S = 2.0
CANCEL_WAIT_S = 20.0  # after scancel, how long to wait for the job (and its container) to end
_HINT = "install Slurm's client commands (sbatch, squeue, scontrol, scancel) and point SLURM_CONF at the cluster"


@dataclass(frozen=True)
class JobState:
    """What Slurm says about one job."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY, ...
    exit_code: int | None = None
    node: str = ""
    reason: str = ""

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT


def task_key(spec: ContainerSpec, task: str, volumes: Mapping[str, Path], log_path: Path) -> str:
    """The task's identity on the cluster: the job's name carries it, so a later run finds the job again."""
    doc = {"record": spec_record(spec), "task": task, "log": str(Path(log_path).absolute()),
           "volumes": {k: str(Path(v).absolute()) for k, v in sorted(volumes.items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def job_name(task: str, key: str) -> str:
    """The job's name: what the task is, and its key (squeue --name finds it; sacct lists it)."""
    return f"medperf-{task}-{key}"


def spec_record(spec: ContainerSpec) -> dict:
    """The container record a spec was parsed from (ContainerSpec.from_record reads it back in the job)."""
    return {"id": spec.id, "name": spec.name, "container_config": dict(spec.config),
            "parameters_config": dict(spec.parameters) if spec.parameters is not None else None,
            "image_hash": spec.image_hash, "additional_files_tarball_url": spec.additional_files_url,
            "additional_files_tarball_hash": spec.additional_files_hash}


def time_limit(text: str | None) -> str | None:
    """runtime.slurm.time_limit in sbatch's --time form: 30m -> 30, 4h -> 240, 2d -> 2-00:00:00, 45s -> 1."""
    if not text:
        return None
    m = re.fullmatch(r"(\d+)([smhd])", text)
    if m is None:
        return text  # Slurm's own form (minutes, MM:SS, HH:MM:SS, D-HH...)
    n, unit = int(m.group(1)), m.group(2)
    if unit == "d":
        return f"{n}-00:00:00"
    return str(max(1, -(-n * {"s": 1, "m": 60, "h": 3600}[unit] // 60)))


def gres_of(runtime: RuntimeSpec) -> str | None:
    """--gres: runtime.slurm.gres, else a count of GPUs from runtime.gpus (N, or device=a,b); `all` needs gres."""
    if runtime.slurm.gres:
        return runtime.slurm.gres
    wanted = normalize_gpus(runtime.gpus, where="runtime.gpus")
    if isinstance(wanted, int) and wanted > 0:
        return f"gpu:{wanted}"
    if isinstance(wanted, (list, tuple)):
        return f"gpu:{len(wanted)}"
    return None


class SlurmRunner:
    """Run MedPerf-format container tasks as Slurm jobs; the applier sees a ContainerRunner like DockerRunner.

    `jobs_dir` (state dir's slurm/) holds one folder per task key: task.json (what slurm_task runs), marker (the
    shared-filesystem check), job.json (the job id), job.out (Slurm's output of the job), result.json (how the
    task ended, written by the job), consumed (a run saw it through). `cache_dir` is DockerRunner's on the node.
    """

    def __init__(self, jobs_dir: Path, cache_dir: Path, runtime: RuntimeSpec, *, environ: Mapping[str, str],
                 timeout: float | None = None, inactivity_timeout: float | None = None,
                 interrupted: Callable[[], bool] = lambda: False, python: str = sys.executable,
                 poll_s: float = POLL_S, watch_s: float = WATCH_S, max_poll_s: float = MAX_POLL_S):
        self.jobs_dir = Path(jobs_dir).absolute()
        self.cache_dir = Path(cache_dir).absolute()
        self.runtime = runtime
        self.environ = dict(environ)
        self.timeout = timeout
        self.inactivity_timeout = inactivity_timeout
        self.interrupted = interrupted
        self.python = python
        self.poll_s = poll_s
        self.watch_s = min(watch_s, poll_s)
        self.max_poll_s = max(max_poll_s, poll_s)
        self._running: dict[str, str] = {}  # job id -> task key, of the jobs this run waits for
        self._lock = threading.Lock()

    # -- the ContainerRunner Protocol -----------------------------------------------------------------------

    def check_image(self, spec: ContainerSpec, *, on_progress: Callable[[int, int], None] | None = None) -> str:
        """The image is checked on the node, by the job, before its task runs (the node's engine pulls it)."""
        return spec.image_hash

    def adopts(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], *, log_path: Path) -> bool:
        """A job of this task that an earlier run left is still in flight, or finished well and was never seen
        through: run_task waits for or takes it, so the caller keeps the task's outputs."""
        key = task_key(spec, task, volumes, log_path)
        return self._adoptable(key, task) is not None

    def run_task(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], *, log_path: Path,
                 on_line: Callable[[str], None] | None = None,
                 inactivity_timeout: float | None = None, timeout: float | None = None) -> TaskRun:
        """Submit `task` as a job (or adopt the one an earlier run left), stream its log, wait for its end."""
        log_path = Path(log_path).absolute()
        key = task_key(spec, task, volumes, log_path)
        job_dir = self.jobs_dir / key
        started = time.monotonic()
        if self.interrupted():
            raise Interrupted(f"{task} of {spec.name} not submitted: the run was interrupted")
        job_id = self._adoptable(key, task)
        if job_id is None:
            job_id = self._submit(spec, task, volumes, log_path, key,
                                  self.timeout if timeout is None else timeout,
                                  self.inactivity_timeout if inactivity_timeout is None else inactivity_timeout)
        last: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        try:
            with self._lock:
                self._running[job_id] = key
            if self.interrupted():  # stop_all ran between the submission and the line above
                raise KeyboardInterrupt
            final = self._follow(job_id, log_path, on_line, last, job_dir / "result.json")
        except KeyboardInterrupt:
            self._cancel([job_id])
            raise Interrupted(f"interrupted while Slurm job {job_id} ran {task} of {spec.image}; the job was "
                              "cancelled", where=f"container {spec.name}", hint="run again to resume") from None
        finally:
            with self._lock:
                self._running.pop(job_id, None)
        result = _read_json(job_dir / "result.json")
        if result is not None and result.get("job_id") == job_id and result.get("ok"):
            # the task ended well (only slurm_task writes this, after it did): whatever the job's state says since
            write_atomic(job_dir / "consumed", job_id.encode())
            return TaskRun(task=task, exit_code=0, duration_s=time.monotonic() - started, log_path=log_path)
        write_atomic(job_dir / "consumed", job_id.encode())  # a failure is seen through too: never adopted again
        raise self._failure(spec, task, final, result if result and result.get("job_id") == job_id else None,
                            job_dir, log_path, last)

    def stop_all(self) -> None:
        """Cancel every job this run waits for (an interrupt; their run_task sees them end)."""
        with self._lock:
            jobs = list(self._running)
        if jobs:
            self._cancel(jobs, wait=False)

    # -- submitting ----------------------------------------------------------------------------------------

    def _submit(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], log_path: Path, key: str,
                timeout: float | None, inactivity_timeout: float | None) -> str:
        job_dir = self.jobs_dir / key
        job_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("result.json", "consumed", "job.json", "job.out"):
            (job_dir / stale).unlink(missing_ok=True)
        log_path.unlink(missing_ok=True)  # the job's log is this run's: its lines stream from the start
        marker = secrets.token_hex(16)
        write_atomic(job_dir / "marker", marker.encode())
        doc = {"record": spec_record(spec), "task": task, "log_path": str(log_path),
               "volumes": {k: str(Path(v).absolute()) for k, v in volumes.items()}, "cache_dir": str(self.cache_dir),
               "gpus": self.runtime.gpus, "shm_size": self.runtime.shm_size, "timeout": timeout,
               "inactivity_timeout": inactivity_timeout}
        write_atomic(job_dir / "task.json", json.dumps(doc, indent=1).encode())
        script = job_dir / "job.sh"
        write_atomic(script, (f"#!/bin/sh\n# medperf-apply: {task} of {spec.name}\n"
                              f"exec {_quote(self.python)} -m runner.clients.slurm_task {_quote(str(job_dir))} "
                              f"{marker}\n").encode())
        slurm = self.runtime.slurm
        exported = [n for n in EXPORTED if n in self.environ]
        args = ["sbatch", "--parsable", f"--job-name={job_name(task, key)}", f"--comment=medperf-apply:{key}",
                f"--output={job_dir / 'job.out'}", f"--chdir={job_dir}", "--ntasks=1",
                "--export=ALL"]
        if slurm.partition:
            args.append(f"--partition={slurm.partition}")
        if slurm.account:
            args.append(f"--account={slurm.account}")
        if (limit := time_limit(slurm.time_limit)) is not None:
            args.append(f"--time={limit}")
        if (gres := gres_of(self.runtime)) is not None:
            args.append(f"--gres={gres}")
        args.extend(slurm.extra_args)
        args.append(str(script))
        # The job's environment is exactly the exported variables: sbatch runs with them alone and exports them
        # all (an explicit --export=NAMES list would make slurmd read the user's login environment too).
        out = self._slurm(args, f"submit {task} of {spec.name}", env={n: self.environ[n] for n in exported})
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmUnavailable(f"sbatch answered {out.strip()!r} instead of a job id", image=spec.image, task=task,
                                   hint=_HINT)
        write_atomic(job_dir / "job.json", json.dumps({"job_id": job_id, "task": task}).encode())
        return job_id

    def _adoptable(self, key: str, task: str) -> str | None:
        """The job of this task left by an earlier run: still in flight, or finished well and not seen through."""
        listing = self._slurm(["squeue", "-h", "--me", "-t", "all", f"--name={job_name(task, key)}", "-o", "%i|%T"],
                              "list this task's jobs")
        in_flight = [line.split("|")[0] for line in listing.splitlines()
                     if line.count("|") == 1 and line.split("|")[1] in IN_FLIGHT]
        if in_flight:
            return in_flight[-1]
        job_dir = self.jobs_dir / key
        result = _read_json(job_dir / "result.json")
        if result and result.get("ok") and result.get("job_id") and not (job_dir / "consumed").exists():
            return str(result["job_id"])
        return None

    # -- waiting ---------------------------------------------------------------------------------------------

    def _follow(self, job_id: str, log_path: Path, on_line, last, result_path: Path) -> JobState:
        """Copy the task's log lines to on_line while the job is in flight; return its final state."""
        offset, pending = 0, b""
        state = self._state(job_id)
        interval = self.poll_s
        asked = time.monotonic()
        while True:
            if self.interrupted() and state.in_flight and threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt  # a signal that landed in a child process (squeue) instead of here
            offset, pending = _tail(log_path, offset, pending, last, on_line)
            if not state.in_flight:
                _tail(log_path, offset, pending, last, on_line, final=True)
                return state
            time.sleep(min(self.watch_s, interval))
            ending = result_path.exists()  # the job wrote how its task ended: its process exits now
            if ending or time.monotonic() - asked >= interval:
                state = self._state(job_id)
                asked = time.monotonic()
                interval = self.watch_s if ending else min(interval * 1.5, self.max_poll_s)

    def _state(self, job_id: str) -> JobState:
        """The job's state: scontrol while the controller remembers it (MinJobAge), then accounting/jobcomp."""
        proc = self._run(["scontrol", "show", "job", "-o", job_id])
        if proc.returncode == 0 and "JobState=" in proc.stdout:
            fields = dict(kv.split("=", 1) for kv in proc.stdout.split() if "=" in kv)
            return JobState(job_id, fields.get("JobState", "UNKNOWN"), _exit_code(fields.get("ExitCode", "")),
                            fields.get("NodeList", ""), fields.get("Reason", ""))
        for extra in ([], ["-c"]):  # slurmdbd accounting, else the jobcomp file
            proc = self._run(["sacct", *extra, "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State,ExitCode,NodeList"])
            for line in proc.stdout.splitlines():
                parts = line.split("|")
                if len(parts) == 4 and parts[0] == job_id:
                    return JobState(job_id, parts[1].split()[0], _exit_code(parts[2]), parts[3])
        if "Invalid job id" in proc.stderr + proc.stdout or proc.returncode == 0:
            return JobState(job_id, "UNKNOWN", reason="the controller and accounting no longer know it")
        raise SlurmUnavailable(f"cannot ask Slurm about job {job_id}: {proc.stderr.strip()}", hint=_HINT)

    def _cancel(self, jobs: list[str], *, wait: bool = True) -> None:
        """scancel the jobs; wait (bounded) until they left RUNNING, so their containers are gone."""
        self._run(["scancel", *jobs])
        if not wait:
            return
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(SlurmUnavailable):
                if not any(self._state(j).in_flight for j in jobs):
                    return
            time.sleep(self.poll_s)

    # -- the edges -------------------------------------------------------------------------------------------

    def _run(self, args: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(args, capture_output=True, text=True, env=dict(self.environ if env is None else env),
                                  timeout=60, check=False)
        except FileNotFoundError as e:
            raise SlurmUnavailable(f"{args[0]} is not installed here", hint=_HINT) from e
        except subprocess.TimeoutExpired as e:
            raise SlurmUnavailable(f"{args[0]} did not answer within 60 s", hint=_HINT) from e

    def _slurm(self, args: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
        proc = self._run(args, env)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"cannot {what}: {args[0]} exited with {proc.returncode}: "
                                   f"{(proc.stderr or proc.stdout).strip()[-300:]}", hint=_HINT)
        return proc.stdout

    def _failure(self, spec: ContainerSpec, task: str, final: JobState, result: dict | None, job_dir: Path,
                 log_path: Path, last) -> Exception:
        where = f"container {spec.name}"
        if result is None and final.exit_code == NOT_SHARED_EXIT or result is None and final.state == "COMPLETED":
            return SharedStateError(
                f"Slurm job {final.job_id} ran {task} on node {final.node or '?'} but found no task files in "
                f"{job_dir} there: the state dir is not on a filesystem the nodes share", where=str(job_dir),
                hint="put the state dir (--state-dir or MEDPERF_APPLY_HOME) on the cluster's shared filesystem")
        error = (result or {}).get("error") or {}
        lines = tuple(error.get("last_lines") or ()) or tuple(last) or _last_lines(job_dir / "job.out")
        exit_code = error.get("exit_code", final.exit_code)
        tail = "\n".join(lines[-LAST_LINES:])
        if final.state == "COMPLETED" or final.state == "FAILED" and error:
            what = error.get("message") or f"exited with code {exit_code}"
            return SlurmJobError(f"{task} of {spec.image} in Slurm job {final.job_id} (node {final.node or '?'}, "
                                 f"{final.state}): {what}", image=spec.image, task=task, exit_code=exit_code,
                                 last_lines=lines, log_path=str(log_path), where=where, job_id=final.job_id,
                                 state=final.state, node=final.node, hint=f"full log: {log_path}")
        return SlurmJobError(f"Slurm job {final.job_id} running {task} of {spec.image} ended {final.state} (exit code "
                             f"{final.exit_code}, node {final.node or '?'}"
                             f"{', ' + final.reason if final.reason and final.reason != 'None' else ''}); last lines:"
                             f"\n{tail}", image=spec.image, task=task, exit_code=final.exit_code, last_lines=lines,
                             log_path=str(log_path), where=where, job_id=final.job_id, state=final.state,
                             node=final.node, hint=f"{_NEXT.get(final.state, 'see')} job output: "
                                                   f"{job_dir / 'job.out'}; task log: {log_path}")


_NEXT = {  # what to do about a job that ended so, before the files to read
    "TIMEOUT": "raise runtime.slurm.time_limit if the task is just slow;",
    "PREEMPTED": "apply again to submit it anew;",
    "NODE_FAIL": "apply again to submit it anew (another node may take it);",
    "BOOT_FAIL": "apply again to submit it anew (another node may take it);",
    "OUT_OF_MEMORY": "ask for more memory (runtime.slurm.extra_args: [\"--mem=...\"]);",
    "CANCELLED": "it was cancelled outside this run (scancel, an administrator); apply again to submit it anew;",
}


def _exit_code(text: str) -> int | None:
    """Slurm's "3:0" (status:signal) -> 3; a signal alone -> 128 + signal."""
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if m is None:
        return None
    code, sig = int(m.group(1)), int(m.group(2))
    return code if code or not sig else 128 + sig


def _tail(path: Path, offset: int, pending: bytes, last, on_line, *, final: bool = False) -> tuple[int, bytes]:
    """New complete lines of a growing log file to `last` and on_line (the rest of a line waits)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset, pending
    offset += len(chunk)
    pending += chunk
    *lines, pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if final and pending:
        lines.append(pending)
        pending = b""
    for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        last.append(line)
        if on_line is not None:
            on_line(line)
    return offset, pending


def _last_lines(path: Path) -> tuple[str, ...]:
    try:
        return tuple(path.read_text(encoding="utf-8", errors="replace").splitlines()[-LAST_LINES:])
    except OSError:
        return ()


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


