"""Fakes behind the same Protocols as the real clients: an in-memory registry and a container runner."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runner.clients.containers import TaskRun
from runner.errors import ContainerError, ImageMismatch, ServerError, ServerWriteUncertain

PREP_CONFIG = {
    "container_type": "DockerImage",
    "image": "medperf-apply/chestxray-prep:latest",
    "tasks": {
        "prepare": {
            "input_volumes": {"data_path": {"mount_path": "/in/data", "type": "directory"},
                              "labels_path": {"mount_path": "/in/labels", "type": "directory"}},
            "output_volumes": {"output_path": {"mount_path": "/out/data", "type": "directory"},
                               "output_labels_path": {"mount_path": "/out/labels", "type": "directory"}},
        },
        "sanity_check": {
            "input_volumes": {"data_path": {"mount_path": "/d", "type": "directory"},
                              "labels_path": {"mount_path": "/l", "type": "directory"}},
        },
        "statistics": {
            "input_volumes": {"data_path": {"mount_path": "/d", "type": "directory"},
                              "labels_path": {"mount_path": "/l", "type": "directory"}},
            "output_volumes": {"output_path": {"mount_path": "/s/statistics.yaml", "type": "file"}},
        },
    },
}
IMAGE_HASH = "sha256:" + "ab" * 32


def tutorial_world() -> dict[str, dict[int, dict]]:
    """The seeded tutorial: container 2 = chestxray_prep, benchmark 1 = chestxray."""
    return {
        "mlcubes": {2: {"id": 2, "name": "chestxray_prep", "container_config": copy.deepcopy(PREP_CONFIG),
                        "parameters_config": None, "image_hash": IMAGE_HASH, "is_valid": True,
                        "state": "OPERATION", "modified_at": "2026-01-01T00:00:00Z"}},
        "benchmarks": {1: {"id": 1, "name": "chestxray", "data_preparation_mlcube": 2, "reference_model": 1,
                           "data_evaluator_mlcube": 4, "approval_status": "APPROVED", "state": "OPERATION",
                           "modified_at": "2026-01-01T00:00:00Z"}},
        "datasets": {},
    }


class FakeApi:
    """An in-memory registry answering the paths the runner uses; records every call."""

    def __init__(self, world: dict | None = None, *, owner: int = 5, before_send=None):
        self.world = world or tutorial_world()
        self.owner = owner
        self.before_send = before_send
        self.request_count = 0
        self.calls: list[tuple[str, str, Any]] = []
        self.uncertain_posts = 0  # next N POSTs raise ServerWriteUncertain
        self.uncertain_lands = True  # ...after landing (True) or without landing (False)
        self._next_id = 1

    # -- Protocol -----------------------------------------------------------------------------------------
    def get(self, path: str, params: Mapping | None = None) -> Any:
        self._count("GET", path, params)
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] in self.world and parts[1].isdigit():
            rec = self.world[parts[0]].get(int(parts[1]))
            if rec is None:
                raise ServerError(f"GET /{path}: 404 Not found.", status=404)
            return copy.deepcopy(rec)
        if len(parts) == 1 and parts[0] in self.world:
            rows = list(self.world[parts[0]].values())
            if params and "name" in params:
                rows = [r for r in rows if r.get("name") == params["name"]]
            return {"count": len(rows), "next": None, "previous": None, "results": copy.deepcopy(rows)}
        raise ServerError(f"GET /{path}: 404", status=404)

    def list(self, path: str) -> list:
        self._count("GET", path, None)
        if path == "me/datasets/":
            return [copy.deepcopy(d) for d in self.world["datasets"].values() if d["owner"] == self.owner]
        parts = [p for p in path.split("/") if p]
        return copy.deepcopy(list(self.world[parts[0]].values()))

    def create(self, path: str, body: Mapping) -> dict:
        self._send("POST", path, body)
        assert path == "datasets/", path
        self._next_id = max([self._next_id, *self.world["datasets"].keys()]) + 1 if self.world["datasets"] else \
            self._next_id
        rec = {**copy.deepcopy(dict(body)), "id": self._next_id, "owner": self.owner, "state": "DEVELOPMENT",
               "report": {}, "is_valid": True, "modified_at": f"t{self.request_count}"}
        if self.uncertain_posts:
            self.uncertain_posts -= 1
            if self.uncertain_lands:
                self.world["datasets"][rec["id"]] = rec
            raise ServerWriteUncertain("POST /datasets/: no answer within 30 s")
        self.world["datasets"][rec["id"]] = rec
        return copy.deepcopy(rec)

    def update(self, path: str, body: Mapping) -> dict:
        self._send("PUT", path, body)
        parts = [p for p in path.split("/") if p]
        rec = self.world[parts[0]][int(parts[1])]
        if rec.get("state") == "OPERATION" and set(body) - {"is_valid", "user_metadata"}:
            raise ServerError("400 non_field_errors: dataset is operational", status=400)
        rec.update(copy.deepcopy(dict(body)))
        rec["modified_at"] = f"t{self.request_count}"
        return copy.deepcopy(rec)

    # -- helpers --------------------------------------------------------------------------------------------
    def _count(self, method: str, path: str, body: Any) -> None:
        self.request_count += 1
        self.calls.append((method, path, body))

    def _send(self, method: str, path: str, body: Mapping) -> None:
        if self.before_send is not None:
            self.before_send(method, path, body)
        self._count(method, path, copy.deepcopy(dict(body)))

    def add_dataset(self, **fields) -> dict:
        rec = {"owner": self.owner, "state": "DEVELOPMENT", "data_preparation_mlcube": 2, "report": {},
               "generated_metadata": {}, "modified_at": "t0", **fields}
        self.world["datasets"][rec["id"]] = rec
        return rec

    def sent(self, method: str | None = None) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] != "GET" and (method is None or c[0] == method)]


class FakeRunner:
    """A ContainerRunner that does what the chest X-ray prep does, on plain files, with injectable failures."""

    def __init__(self, *, fail: Mapping[str, int] | None = None, image_ok: bool = True, stats: Any = None):
        self.fail = dict(fail or {})  # task -> exit code
        self.interrupt: str | None = None  # task during which Ctrl-C arrives
        self.image_ok = image_ok
        self.stats = stats  # None: computed from the prepared files
        self.runs: list[tuple[str, dict]] = []
        self.checked = 0

    def check_image(self, spec) -> str:
        self.checked += 1
        if not self.image_ok:
            raise ImageMismatch(f"image {spec.image} is sha256:00, but the container record expects {spec.image_hash}")
        return spec.image_hash

    def run_task(self, spec, task: str, volumes: Mapping[str, Path], *, log_path: Path, on_line=None,
                 inactivity_timeout=None, timeout=None) -> TaskRun:
        self.runs.append((task, dict(volumes)))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"running {task}\n")
        if on_line is not None:
            on_line(f"{task}: working")
        if task == self.interrupt:
            raise KeyboardInterrupt
        if task in self.fail:
            raise ContainerError(f"{task} of {spec.image} exited with code {self.fail[task]}", image=spec.image,
                                 task=task, exit_code=self.fail[task], last_lines=("boom",), log_path=str(log_path))
        if task == "prepare":
            out, out_labels = Path(volumes["output_path"]), Path(volumes["output_labels_path"])
            for f in sorted(Path(volumes["data_path"]).iterdir()):
                (out / (f.stem + ".npy")).write_bytes(b"prepared:" + f.read_bytes())
            for f in sorted(Path(volumes["labels_path"]).iterdir()):
                (out_labels / (f.stem + ".npy")).write_bytes(b"label:" + f.read_bytes())
        elif task == "statistics":
            n = len(list(Path(volumes["data_path"]).iterdir()))
            stats = {"num_cases": n, "labels_count": {"effusion": n}} if self.stats is None else self.stats
            Path(volumes["output_path"]).write_text(yaml.safe_dump(stats) if stats else "")
        return TaskRun(task, 0, 0.01, log_path)

    def tasks_run(self) -> list[str]:
        return [t for t, _ in self.runs]
