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
METRICS_CONFIG = {
    "container_type": "DockerImage",
    "image": "medperf-apply/chestxray-metrics:latest",
    "tasks": {"evaluate": {
        "input_volumes": {"predictions": {"mount_path": "/p", "type": "directory"},
                          "labels": {"mount_path": "/l", "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": "/r/results.yaml", "type": "file"},
                           "local_outputs_path": {"mount_path": "/o", "type": "directory"}},
    }},
}


def model_config(image: str) -> dict:
    return {"container_type": "DockerImage", "image": image, "tasks": {"infer": {
        "input_volumes": {"data_path": {"mount_path": "/d", "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": "/p", "type": "directory"}}}}}


def _container(cid: int, name: str, config: dict) -> dict:
    return {"id": cid, "name": name, "container_config": copy.deepcopy(config), "parameters_config": None,
            "image_hash": IMAGE_HASH, "is_valid": True, "state": "OPERATION", "modified_at": "2026-01-01T00:00:00Z"}


def model_record(mid: int, name: str, cid: int, image: str) -> dict:
    return {"id": mid, "name": name, "type": "CONTAINER", "state": "OPERATION", "owner": 3,
            "container": _container(cid, name, model_config(image))}


def tutorial_world() -> dict[str, Any]:
    """The seeded tutorial: container 2 = chestxray_prep, 4 = metrics, benchmark 1 = chestxray (owner 2) with
    reference model 1 (chestxray_cnn) and model 2 (chestxray_linear, approved)."""
    return {
        "mlcubes": {2: _container(2, "chestxray_prep", PREP_CONFIG), 4: _container(4, "chestxray_metrics",
                                                                                   METRICS_CONFIG)},
        "benchmarks": {1: {"id": 1, "name": "chestxray", "data_preparation_mlcube": 2, "reference_model": 1,
                           "data_evaluator_mlcube": 4, "approval_status": "APPROVED", "state": "OPERATION",
                           "owner": 2, "dataset_auto_approval_mode": "NEVER", "metadata": {},
                           "modified_at": "2026-01-01T00:00:00Z"}},
        "models": {1: model_record(1, "chestxray_cnn", 3, "medperf-apply/chestxray-cnn:latest"),
                   2: model_record(2, "chestxray_linear", 5, "medperf-apply/chestxray-linear:latest")},
        "datasets": {},
        "results": {},
        "dataset_assocs": [],  # history rows
        "model_assocs": [{"model": 2, "benchmark": 1, "approval_status": "APPROVED", "priority": 0,
                          "created_at": "2026-01-01T00:00:00Z"}],
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
        if len(parts) == 4 and parts[0] == "datasets" and parts[2] == "benchmarks":
            rows = self._pair(int(parts[1]), int(parts[3]))
            if not rows:
                raise ServerError(f"GET /{path}: 404", status=404)
            return copy.deepcopy(rows)
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
        if path == "me/datasets/associations/":
            mine = {i for i, d in self.world["datasets"].items() if d["owner"] == self.owner}
            return copy.deepcopy([r for r in self.world["dataset_assocs"] if r["dataset"] in mine])
        if path == "me/results/":
            return copy.deepcopy([r for r in self.world["results"].values() if r["owner"] == self.owner])
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3 and parts[0] == "benchmarks" and parts[2] == "models":
            bid = int(parts[1])
            mine = [i for i, d in self.world["datasets"].items() if d["owner"] == self.owner]
            if not any(self._latest(i, bid) == "APPROVED" for i in mine):
                raise ServerError(f"not allowed to GET /{path}", status=403)
            rows = [r for r in self.world["model_assocs"] if r["benchmark"] == bid]
            return copy.deepcopy(sorted(rows, key=lambda r: -r.get("priority", 0)))
        return copy.deepcopy(list(self.world[parts[0]].values()))

    def create(self, path: str, body: Mapping) -> dict:
        self._send("POST", path, body)
        if path == "datasets/benchmarks/":
            return self._associate(body)
        if path == "results/":
            return self._create_result(body)
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
        if len(parts) == 4 and parts[2] == "benchmarks":
            rows = self._pair(int(parts[1]), int(parts[3]))
            if not rows or rows[-1]["approval_status"] != "PENDING":
                raise ServerError("400: User can approve or reject an association request only if it is pending",
                                  status=400)
            rows[-1]["approval_status"] = body["approval_status"]
            rows[-1]["approved_at"] = self._stamp()
            return copy.deepcopy(rows[-1])
        if parts[0] == "results":
            rec = self.world["results"][int(parts[1])]
            if rec["finalized"]:
                raise ServerError("400: User cannot update a result object after it's been finalized.", status=400)
            rec.update(copy.deepcopy(dict(body)))
            if "results" in body:
                rec["finalized"] = True
            return copy.deepcopy(rec)
        rec = self.world[parts[0]][int(parts[1])]
        if rec.get("state") == "OPERATION" and set(body) - {"is_valid", "user_metadata"}:
            raise ServerError("400 non_field_errors: dataset is operational", status=400)
        rec.update(copy.deepcopy(dict(body)))
        rec["modified_at"] = f"t{self.request_count}"
        return copy.deepcopy(rec)

    # -- associations and results, with MedPerf's rules ---------------------------------------------------
    def _stamp(self) -> str:
        self._clock = getattr(self, "_clock", 0) + 1
        return f"2026-11-23T10:00:{self._clock:05d}Z"

    def _pair(self, dataset: int, benchmark: int) -> list[dict]:
        return [r for r in self.world["dataset_assocs"] if r["dataset"] == dataset and r["benchmark"] == benchmark]

    def _latest(self, dataset: int, benchmark: int) -> str | None:
        rows = self._pair(dataset, benchmark)
        return rows[-1]["approval_status"] if rows else None

    def _associate(self, body: Mapping) -> dict:
        latest = self._latest(body["dataset"], body["benchmark"])
        if latest in ("PENDING", "APPROVED"):
            raise ServerError("400: User can create a new request only if prior request is rejected", status=400)
        bench = self.world["benchmarks"][body["benchmark"]]
        status = "APPROVED" if bench.get("dataset_auto_approval_mode") == "ALWAYS" else "PENDING"
        stamp = self._stamp()
        row = {"id": len(self.world["dataset_assocs"]) + 1, **copy.deepcopy(dict(body)), "approval_status": status,
               "initiated_by": self.owner, "created_at": stamp, "modified_at": stamp,
               "approved_at": stamp if status == "APPROVED" else None}
        if self.uncertain_posts:
            self.uncertain_posts -= 1
            if self.uncertain_lands:
                self.world["dataset_assocs"].append(row)
            raise ServerWriteUncertain("POST /datasets/benchmarks/: no answer within 30 s")
        self.world["dataset_assocs"].append(row)
        return copy.deepcopy(row)

    def approve(self, dataset: int, benchmark: int = 1, status: str = "APPROVED") -> None:
        """The benchmark owner's decision (not through the runner)."""
        rows = self._pair(dataset, benchmark)
        rows[-1]["approval_status"] = status
        rows[-1]["approved_at"] = self._stamp()

    def _create_result(self, body: Mapping) -> dict:
        bench = self.world["benchmarks"][body["benchmark"]]
        if body["model"] != bench["reference_model"]:
            if self._latest(body["dataset"], body["benchmark"]) != "APPROVED":
                raise ServerError("400: Dataset-Benchmark association must be approved", status=400)
        rid = max(self.world["results"], default=0) + 1
        rec = {**copy.deepcopy(dict(body)), "id": rid, "owner": self.owner, "finalized": False,
               "created_at": self._stamp()}
        if self.uncertain_posts:
            self.uncertain_posts -= 1
            if self.uncertain_lands:
                self.world["results"][rid] = rec
            raise ServerWriteUncertain("POST /results/: no answer within 30 s")
        self.world["results"][rid] = rec
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
        self.fail = dict(fail or {})  # task, or "image:task" -> exit code
        self.metrics: dict = {"Accuracy": 0.75, "AUC": 0.8125}
        self.interrupt: str | None = None  # task during which Ctrl-C arrives
        self.image_ok = image_ok
        self.stats = stats  # None: computed from the prepared files
        self.runs: list[tuple[str, dict]] = []
        self.checked = 0

    def check_image(self, spec, *, on_progress=None) -> str:
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
        code = self.fail.get(f"{spec.image}:{task}", self.fail.get(task))
        if code is not None:
            raise ContainerError(f"{task} of {spec.image} exited with code {code}", image=spec.image,
                                 task=task, exit_code=code, last_lines=("boom",), log_path=str(log_path))
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
        elif task == "infer":
            out = Path(volumes["output_path"])
            for f in sorted(Path(volumes["data_path"]).iterdir()):
                (out / f"{f.stem}.pred").write_text(f"prediction for {f.name}\n")
        elif task == "evaluate":
            assert Path(volumes["predictions"]).is_dir() and Path(volumes["labels"]).is_dir()
            Path(volumes["output_path"]).write_text(yaml.safe_dump(self.metrics) if self.metrics else "")
        return TaskRun(task, 0, 0.01, log_path)

    def stop_all(self) -> None:
        self.stopped_all = True

    def tasks_run(self) -> list[str]:
        return [t for t, _ in self.runs]
