"""The Docker SDK adapter: check an image's identity and run one task of a MedPerf-format container, sandboxed.

The `docker` package is imported lazily inside DockerRunner, so planning never imports it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import yaml

from runner.clients import TaskRun
from runner.clients.files import empty_additional_files, fetch_additional_files
from runner.clients.images import ensure_image
from runner.container_spec import RUNNER_KEYS, ContainerSpec, Volume, normalize_gpus
from runner.errors import ContainerError, ContainerSpecError, DockerUnavailable, Interrupted

OWNER_LABEL = "medperf-apply.owner"  # the runner's cache dir (in the state dir): whose containers these are
NOBODY = 65534  # the uid:gid containers run as when the caller is root: a container never runs as root
LAST_LINES = 20
_EOF = object()
_POLL_S = 0.5  # how often the log wait wakes up to check timeouts (and lets Ctrl-C in)
_DOCKER_HINT = "start the Docker engine, or point DOCKER_HOST at it (e.g. DOCKER_HOST=unix:///path/docker.sock)"


class DockerRunner:
    """Run MedPerf-format containers on the local Docker engine with MedPerf's mounts and a tight sandbox.

    `cache_dir` holds the additional files (by tarball hash) and per-run scratch folders (parameters.yaml,
    the private /tmp), removed after each run. `uid`/`gid` default to the caller's, or nobody when the
    caller is root. `gpus` and `shm_size` override every task's run_args.gpus and run_args.shm_size, as MedPerf's
    --gpus and --shm-size do (gpus "0": none, whatever run_args asks).
    """

    def __init__(self, cache_dir: Path, *, client=None, uid: int | None = None, gid: int | None = None,
                 gpus: str | int | None = None, shm_size: str | int | None = None, timeout: float | None = None,
                 inactivity_timeout: float | None = None):
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout  # defaults for run_task calls that give none (medperf-apply --task-timeout)
        self.inactivity_timeout = inactivity_timeout
        self._client = client
        caller_is_root = os.getuid() == 0
        self.uid = uid if uid is not None else (NOBODY if caller_is_root else os.getuid())
        self.gid = gid if gid is not None else (NOBODY if caller_is_root else os.getgid())
        self.gpus = gpus
        self.shm_size = shm_size
        self._owner = str(self.cache_dir.absolute())
        self.orphans_removed = 0
        self._running: set = set()  # containers of tasks now running (stop_all stops them)
        self._running_lock = threading.Lock()

    def stop_all(self) -> None:
        """Stop every task still running (an interrupt reaches the main thread; parallel tasks run in others):
        their run_task sees the container end and removes it."""
        with self._running_lock:
            running = list(self._running)
        for container in running:
            _stop(container)

    def adopts(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], *, log_path: Path) -> bool:
        """Never: a dead run's containers are removed (_remove_orphans), their tasks run again."""
        return False

    # -- the engine -------------------------------------------------------------------------------

    def _docker(self):
        if self._client is None:
            import docker

            try:
                client = docker.from_env(timeout=120)
                client.ping()
            except Exception as e:  # the SDK raises DockerException or requests errors alike
                raise DockerUnavailable(f"no Docker engine answers: {e}", hint=_DOCKER_HINT) from e
            self._client = client
            self._remove_orphans(client)
        return self._client

    def _remove_orphans(self, client) -> None:
        """Remove task containers of this state dir left by a run that was killed (SIGKILL cannot stop them).

        The caller holds the state dir's lock, so no other run of this state dir has containers: any found
        belong to a dead run (still running, writing into outputs a resumed step is about to rewrite, or exited
        and never removed).
        """
        try:
            left = client.containers.list(all=True, sparse=True, filters={"label": f"{OWNER_LABEL}={self._owner}"})
        except Exception:  # listing is a courtesy: the task itself reports an unusable engine
            return
        for container in left:
            _remove(container)
        self.orphans_removed += len(left)

    def check_image(self, spec: ContainerSpec, *, on_progress: Callable[[int, int], None] | None = None) -> str:
        """Make sure the registered image is in the engine, and return its identity (spec.image_hash).

        DockerImage: the local image (by reference, or by `repo@digest`) must be the one image_hash names (a
        registry digest in RepoDigests, or the local image id); an image absent locally is pulled by digest,
        after the registry confirmed that the reference's tag names that digest. DockerArchive: the tarball is
        fetched, its SHA-256 checked against image_hash, then loaded (once per hash). ImageMismatch names both
        values; nothing is pulled, loaded or run after one. `on_progress(done, total)` sees a pull's or a
        download's bytes."""
        self._local_image(spec, on_progress)
        return spec.image_hash

    def _local_image(self, spec: ContainerSpec, on_progress: Callable[[int, int], None] | None = None) -> str:
        """The reference to run spec by (after check_image's checks): the image, `repo@digest`, or an image id."""
        import docker

        client = self._docker()
        try:
            return ensure_image(client, spec, self.cache_dir / "archives", on_progress)
        except docker.errors.APIError as e:
            raise ContainerError(f"cannot inspect image {spec.image}: {e.explanation or e}", image=spec.image,
                                 where=f"container {spec.name}") from e
        except docker.errors.DockerException as e:
            raise DockerUnavailable(f"no Docker engine answers: {e}", image=spec.image, hint=_DOCKER_HINT) from e

    # -- running a task ---------------------------------------------------------------------------

    def run_task(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], *, log_path: Path,
                 on_line: Callable[[str], None] | None = None,
                 inactivity_timeout: float | None = None, timeout: float | None = None) -> TaskRun:
        """Run `task` of `spec` with MedPerf's mounts; stream its output to log_path and on_line; always remove it."""
        import docker

        timeout = self.timeout if timeout is None else timeout
        inactivity_timeout = self.inactivity_timeout if inactivity_timeout is None else inactivity_timeout
        where = f"container {spec.name}"
        log_path = Path(log_path)
        last = collections.deque(maxlen=LAST_LINES)
        started = time.monotonic()
        try:
            with self.created(spec, task, volumes) as container:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with open(log_path, "wb") as log:
                        container.start()
                        self._follow(container, log, last, on_line, inactivity_timeout, timeout, spec, task,
                                     log_path)
                    exit_code = int(container.wait(timeout=60).get("StatusCode", -1))
                except KeyboardInterrupt:
                    _stop(container)
                    raise Interrupted(f"interrupted while running {task} of {spec.image}; the container was "
                                      "stopped", where=where, hint="run again to resume") from None
        except docker.errors.APIError as e:
            raise ContainerError(f"Docker refused to run {task} of {spec.image}: {e.explanation or e}",
                                 image=spec.image, task=task, last_lines=tuple(last), log_path=str(log_path),
                                 where=where, hint=_refusal_hint(e)) from e
        except docker.errors.DockerException as e:
            raise DockerUnavailable(f"lost the Docker engine while running {task}: {e}", image=spec.image,
                                    task=task, hint=_DOCKER_HINT) from e
        except Exception as e:
            if type(e).__module__.startswith(("requests", "urllib3")):
                raise DockerUnavailable(f"lost the Docker engine while running {task}: {e}", image=spec.image,
                                        task=task, hint=_DOCKER_HINT) from e
            raise
        duration = time.monotonic() - started
        if exit_code != 0:
            tail = "\n".join(last)
            raise ContainerError(f"{task} of {spec.image} exited with code {exit_code}; last lines:\n{tail}",
                                 image=spec.image, task=task, exit_code=exit_code, last_lines=tuple(last),
                                 log_path=str(log_path), where=where, hint=f"full log: {log_path}")
        return TaskRun(task=task, exit_code=exit_code, duration_s=duration, log_path=log_path)

    @contextlib.contextmanager
    def created(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path]) -> Iterator:
        """The task's container, created but not started (run_task starts it): the image checked first, MedPerf's
        mounts, the sandbox, the GPUs and shared memory asked; removed on exit, with its scratch folder."""
        where = f"container {spec.name}"
        cfg = _task_config(spec, task, volumes, where)
        image = self._local_image(spec)  # before anything is created or run
        client = self._docker()
        name = f"medperf-{task}-{secrets.token_hex(8)}"
        work = self.cache_dir / "runs" / name
        container = None
        try:
            work.mkdir(parents=True)
            mounts = self._mounts(spec, task, cfg.volumes, volumes, work, where)
            container = self._create(client, image, spec, task, cfg, name, mounts, where)
            with self._running_lock:
                self._running.add(container)
            yield container
        finally:
            with self._running_lock:
                self._running.discard(container)
            _remove(container)
            shutil.rmtree(work, ignore_errors=True)

    def _create(self, client, image: str, spec: ContainerSpec, task: str, cfg, name: str, mounts: list, where: str):
        """The task's container, created with the sandbox: no network, no capabilities, not root, GPUs if asked."""
        gpus = self.gpus if self.gpus is not None else cfg.gpus  # MedPerf: --gpus overrides run_args.gpus
        shm_size = self.shm_size if self.shm_size is not None else cfg.shm_size
        return client.containers.create(
            image,
            command=list(cfg.command) if cfg.command is not None else None,
            entrypoint=list(cfg.entrypoint) if cfg.entrypoint is not None else None,
            environment=dict(cfg.environment) or None,
            user=f"{self.uid}:{self.gid}",
            name=name,
            labels={"medperf-apply.task": task, "medperf-apply.container": spec.name, OWNER_LABEL: self._owner},
            network_mode="none",
            mounts=mounts,
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            device_requests=_device_requests(gpus, where),
            shm_size=shm_size if shm_size not in (None, "") else None,
            detach=True,
        )

    def _mounts(self, spec: ContainerSpec, task: str, declared: tuple[Volume, ...], supplied: Mapping[str, Path],
                work: Path, where: str) -> list:
        """Bind mounts for the declared volumes, plus the private /tmp; creates missing outputs."""
        from docker.types import Mount

        chown = os.getuid() == 0 and (self.uid, self.gid) != (0, 0)
        host: dict[str, Path] = {k: Path(p) for k, p in supplied.items() if k not in RUNNER_KEYS}
        if any(v.key == "parameters_file" for v in declared):
            params = work / "parameters.yaml"
            params.write_text(yaml.safe_dump(dict(spec.parameters), sort_keys=False), encoding="utf-8")
            params.chmod(0o644)
            host["parameters_file"] = params
        if any(v.key == "additional_files" for v in declared):
            files_cache = self.cache_dir / "additional_files"
            host["additional_files"] = (
                fetch_additional_files(spec.additional_files_url, spec.additional_files_hash, files_cache, where=where)
                if spec.additional_files_url else empty_additional_files(files_cache))
        mounts = []
        for vol in declared:
            path = host[vol.key].absolute()
            read_only = not vol.output or vol.key in RUNNER_KEYS  # never let a container write into our caches
            if vol.output and vol.key not in RUNNER_KEYS:
                _ensure_output(path, vol, task, spec, where)
                if chown:
                    os.chown(path, self.uid, self.gid)
            elif not path.exists():
                raise ContainerError(f"input volume {vol.key} of {task} does not exist: {path}", image=spec.image,
                                     task=task, where=where)
            if vol.type == "directory" and not path.is_dir() or vol.type == "file" and path.is_dir():
                raise ContainerError(f"volume {vol.key} of {task} must be a {vol.type}: {path}", image=spec.image,
                                     task=task, where=where)
            mounts.append(Mount(target=vol.mount_path, source=str(path.resolve()), type="bind", read_only=read_only))
        tmp = work / "tmp"
        tmp.mkdir(mode=0o700)
        if chown:
            os.chown(tmp, self.uid, self.gid)
        mounts.append(Mount(target="/tmp", source=str(tmp), type="bind", read_only=False))
        return mounts

    def _follow(self, container, log, last, on_line, inactivity_timeout, timeout, spec, task, log_path) -> None:
        """Copy the container's output to `log` and `on_line` until it exits or a timeout fires."""
        chunks: queue.Queue = queue.Queue()

        def pump():
            try:
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    chunks.put(chunk)
            except Exception as e:  # surfaced in the main thread
                chunks.put(e)
            finally:
                chunks.put(_EOF)

        threading.Thread(target=pump, name=f"logs-{container.name}", daemon=True).start()
        start = last_output = time.monotonic()
        pending = b""
        while True:
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                _stop(container)
                raise self._timed_out(f"ran longer than its wall-clock timeout of {timeout:g} s", spec, task, last,
                                      log_path)
            if inactivity_timeout is not None and now - last_output >= inactivity_timeout:
                _stop(container)
                raise self._timed_out(f"printed nothing for {inactivity_timeout:g} s (inactivity timeout)", spec, task,
                                      last, log_path)
            try:
                item = chunks.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _EOF:
                break
            if isinstance(item, Exception):
                raise item
            log.write(item)
            log.flush()
            last_output = time.monotonic()
            pending += item
            *lines, pending = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                _emit(raw, last, on_line)
        if pending:
            _emit(pending, last, on_line)

    @staticmethod
    def _timed_out(what: str, spec: ContainerSpec, task: str, last, log_path: Path) -> ContainerError:
        tail = "\n".join(last)
        return ContainerError(f"{task} of {spec.image} {what}; it was stopped. Last lines:\n{tail}",
                              image=spec.image, task=task, exit_code=None, last_lines=tuple(last),
                              log_path=str(log_path), where=f"container {spec.name}",
                              hint=f"raise the timeout if the task is just slow; full log: {log_path}")


def _task_config(spec: ContainerSpec, task: str, volumes: Mapping[str, Path], where: str):
    """The task's configuration, checked against what the caller supplies (ContainerSpecError)."""
    cfg = spec.task(task)  # ContainerSpecError if the container has no such task
    declared_missing = [v.key for v in cfg.volumes if v.key not in RUNNER_KEYS and v.key not in volumes]
    if declared_missing:
        raise ContainerSpecError(f"task {task} declares volume {declared_missing[0]}, which is not supplied "
                                 f"to {task} (supplied: {', '.join(sorted(volumes)) or 'none'})", where=where,
                                 hint="MedPerf's keys per task are fixed; the container must not declare others")
    if cfg.volume("parameters_file") and spec.parameters is None:
        raise ContainerSpecError(f"task {task} mounts parameters_file but the container has no parameters_config",
                                 where=where)
    return cfg


def _emit(raw: bytes, last, on_line) -> None:
    line = raw.decode("utf-8", errors="replace")
    last.append(line)
    if on_line is not None:
        on_line(line)


def _ensure_output(path: Path, vol: Volume, task: str, spec: ContainerSpec, where: str) -> None:
    """Create a missing output volume: a directory, or an empty file (MedPerf's behaviour)."""
    try:
        if vol.type == "directory":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.touch()
    except OSError as e:
        raise ContainerError(f"cannot create output volume {vol.key} of {task} at {path}: {e.strerror or e}",
                             image=spec.image, task=task, where=where) from e


def _device_requests(gpus, where: str):
    """Translate MedPerf's gpus value (all | N | device=0,1; empty/0 = none) to Docker device requests."""
    wanted = normalize_gpus(gpus, where=where)
    if wanted is None:
        return None
    from docker.types import DeviceRequest

    if wanted == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(wanted, int):
        return [DeviceRequest(count=wanted, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(wanted), capabilities=[["gpu"]])]


def _refusal_hint(e) -> str | None:
    """What to do when the engine refuses a container: a GPU asked for where the engine has none, say so."""
    text = str(getattr(e, "explanation", "") or e)
    if "device driver" in text and "gpu" in text:
        return ("this Docker engine has no GPU support (no GPU, or no NVIDIA container toolkit): run without "
                "--gpus / runtime.gpus, or on a machine with GPUs")
    return None


def _stop(container) -> None:
    if container is None:
        return
    try:
        container.kill()
    except Exception:  # already stopped, or the engine is gone: removal below reports nothing either
        pass


def _remove(container) -> None:
    if container is None:
        return
    try:
        container.remove(force=True)
    except Exception:
        pass
