"""Fakes behind the same Protocols as the real clients: an in-memory registry and a container runner.

The fake registry decides who may do what with the real server's pure rules (server/rules.py), and answers a
refusal with the status the real server sends; tests/runner/test_fake_contract.py runs the same cases against
both, so a fake that drifts from the server fails there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from runner.clients.containers import TaskRun
from runner.errors import ContainerError, ImageMismatch, Interrupted, ServerError, ServerWriteUncertain
from server import rules
from server.errors import NON_FIELD, ApiError, Forbidden, Invalid, NotFound

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

# The seeded users: the admin, the benchmark owner (owns benchmark 1 and its containers), the model owner,
# the data owner the workspace acts as, and a second data owner.
ADMIN, BENCHMARK_OWNER, MODEL_OWNER, DATA_OWNER, DATA_OWNER_2 = 1, 2, 3, 5, 6
USERS = {ADMIN: ("testadmin@example.com", True), BENCHMARK_OWNER: ("testbo@example.com", False),
         MODEL_OWNER: ("testmo@example.com", False), DATA_OWNER: ("testdo@example.com", False),
         DATA_OWNER_2: ("testdo2@example.com", False)}


def model_config(image: str) -> dict:
    return {"container_type": "DockerImage", "image": image, "tasks": {"infer": {
        "input_volumes": {"data_path": {"mount_path": "/d", "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": "/p", "type": "directory"}}}}}


def _container(cid: int, name: str, config: dict, owner: int = BENCHMARK_OWNER) -> dict:
    return {"id": cid, "name": name, "container_config": copy.deepcopy(config), "parameters_config": None,
            "image_hash": IMAGE_HASH, "is_valid": True, "state": "OPERATION", "owner": owner,
            "modified_at": "2026-01-01T00:00:00Z"}


def model_record(mid: int, name: str, cid: int, image: str) -> dict:
    return {"id": mid, "name": name, "type": "CONTAINER", "state": "OPERATION", "owner": MODEL_OWNER,
            "container": _container(cid, name, model_config(image), MODEL_OWNER)}


def tutorial_world() -> dict[str, Any]:
    """The seeded tutorial: container 2 = chestxray_prep, 4 = metrics, benchmark 1 = chestxray (owner 2) with
    reference model 1 (chestxray_cnn) and model 2 (chestxray_linear, approved)."""
    return {
        "users": {uid: {"id": uid, "username": email.split("@")[0], "email": email, "first_name": "",
                        "last_name": "", "is_admin": admin} for uid, (email, admin) in USERS.items()},
        "mlcubes": {2: _container(2, "chestxray_prep", PREP_CONFIG), 4: _container(4, "chestxray_metrics",
                                                                                   METRICS_CONFIG)},
        "benchmarks": {1: {"id": 1, "name": "chestxray", "data_preparation_mlcube": 2, "reference_model": 1,
                           "data_evaluator_mlcube": 4, "approval_status": "APPROVED", "state": "OPERATION",
                           "owner": BENCHMARK_OWNER, "dataset_auto_approval_mode": "NEVER",
                           "dataset_auto_approval_allow_list": [], "metadata": {},
                           "modified_at": "2026-01-01T00:00:00Z"}},
        "models": {1: model_record(1, "chestxray_cnn", 3, "medperf-apply/chestxray-cnn:latest"),
                   2: model_record(2, "chestxray_linear", 5, "medperf-apply/chestxray-linear:latest")},
        "datasets": {},
        "results": {},
        "dataset_assocs": [],  # history rows
        "model_assocs": [{"model": 2, "benchmark": 1, "approval_status": "APPROVED", "priority": 0,
                          "created_at": "2026-01-01T00:00:00Z"}],
    }


def _flatten(body: Any) -> str:
    """MedPerf's error body ({field: [messages]} or {"detail": message}) as one line."""
    if isinstance(body, Mapping):
        return "; ".join(_flatten(v) if k in ("detail", NON_FIELD) else f"{k}: {_flatten(v)}"
                         for k, v in body.items())
    if isinstance(body, list):
        return " ".join(_flatten(v) for v in body)
    return str(body)


def refusal(method: str, path: str, status: int, body: Any = None) -> ServerError:
    """The ServerError the real client raises for this answer: the same status, body and leading words."""
    shown = f"/api/v0/{path}"
    detail = _flatten(body) if body is not None else ""
    what = {401: "the server does not accept the token", 403: f"not allowed to {method} {shown}",
            404: f"{shown} does not exist on the server"}.get(status, f"{method} {shown} was refused (HTTP {status})")
    return ServerError(f"{what}: {detail}" if detail else what, status=status, body=body)


class _Shared:
    """What every user's view of one fake registry shares: its clock, counters and the uncertain-POST switch."""

    def __init__(self):
        self.clock = 0
        self.request_count = 0
        self.uncertain_posts = 0  # next N POSTs raise ServerWriteUncertain
        self.uncertain_lands = True  # ...after landing (True) or without landing (False)


class FakeApi:
    """An in-memory registry answering the paths the runner uses, as the user `owner`; records every call.

    `as_user(id)` is the same registry seen with another user's token (the benchmark owner's, an admin's).
    """

    def __init__(self, world: dict | None = None, *, owner: int = DATA_OWNER, before_send=None):
        self.world = world or tutorial_world()
        self.owner = owner
        self.before_send = before_send
        self.calls: list[tuple[str, str, Any]] = []
        self._shared = _Shared()

    def as_user(self, user_id: int, before_send=None) -> FakeApi:
        """The same registry (world, call log, counters) seen by another user."""
        view = copy.copy(self)
        view.owner, view.before_send = user_id, before_send
        return view

    # the counters every view shares
    request_count = property(lambda self: self._shared.request_count)
    uncertain_posts = property(lambda self: self._shared.uncertain_posts,
                               lambda self, n: setattr(self._shared, "uncertain_posts", n))
    uncertain_lands = property(lambda self: self._shared.uncertain_lands,
                               lambda self, v: setattr(self._shared, "uncertain_lands", v))

    @property
    def user(self) -> dict:
        return self.world["users"][self.owner]

    # -- Protocol -----------------------------------------------------------------------------------------
    def get(self, path: str, params: Mapping | None = None) -> Any:
        self._count("GET", path, params)
        return self._answer("GET", path, lambda: copy.deepcopy(self._get(path, params)))

    def list(self, path: str) -> list:
        self._count("GET", path, None)
        return self._answer("GET", path, lambda: copy.deepcopy(self._list(path)))

    def create(self, path: str, body: Mapping) -> dict:
        self._send("POST", path, body)
        return self._answer("POST", path, lambda: copy.deepcopy(self._create(path, copy.deepcopy(dict(body)))))

    def update(self, path: str, body: Mapping) -> dict:
        self._send("PUT", path, body)
        return self._answer("PUT", path, lambda: copy.deepcopy(self._update(path, copy.deepcopy(dict(body)))))

    # -- reads --------------------------------------------------------------------------------------------
    def _get(self, path: str, params: Mapping | None) -> Any:
        parts = [p for p in path.split("/") if p]
        if parts == ["me"]:
            return dict(self.user)
        if len(parts) == 2 and parts[0] == "users" and parts[1].isdigit():
            target = self._found("users", int(parts[1]))
            prepares = any(d["owner"] == target["id"] and self.world["mlcubes"].get(d.get("data_preparation_mlcube"),
                                                                                    {}).get("owner") == self.owner
                           for d in self.world["datasets"].values())
            rules.require(rules.can_view_user(self.user, target["id"], prepares))
            return dict(target)
        if len(parts) == 4 and parts[0] == "datasets" and parts[2] == "benchmarks":
            dataset, benchmark = self._pair(int(parts[1]), int(parts[3]))
            return sorted(self._history(dataset["id"], benchmark["id"]), key=lambda r: (r["modified_at"], r["id"]))
        if parts[:1] == ["results"] and len(parts) == 2:
            result = self.world["results"].get(int(parts[1]))
            if result is None:  # the real server looks the result up for its permission check first
                raise NotFound() if rules.is_admin(self.user) else Forbidden()
            rules.require(rules.can_view_result(self.user, result, self.world["datasets"].get(result["dataset"]),
                                                self.world["benchmarks"].get(result["benchmark"])))
            return result
        if len(parts) == 2 and parts[0] in self.world and parts[1].isdigit():
            return self._view(parts[0], self._found(parts[0], int(parts[1])))
        if len(parts) == 1 and parts[0] in self.world:
            rows = [self._public(parts[0], r) for r in self.world[parts[0]].values()]
            if params and "name" in params:
                rows = [r for r in rows if r.get("name") == params["name"]]
            return {"count": len(rows), "next": None, "previous": None, "results": rows}
        raise NotFound()

    def _list(self, path: str) -> list:
        me = self.owner
        if path == "me/datasets/":
            return [d for d in self.world["datasets"].values() if d["owner"] == me]
        if path == "me/datasets/associations/":  # rows of my datasets and of my benchmarks
            return [r for r in self.world["dataset_assocs"]
                    if self.world["datasets"][r["dataset"]]["owner"] == me
                    or self.world["benchmarks"][r["benchmark"]]["owner"] == me]
        if path == "me/results/":
            return [r for r in self.world["results"].values() if r["owner"] == me]
        if path == "me/benchmarks/":
            return [b for b in self.world["benchmarks"].values() if b["owner"] == me]
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3 and parts[0] == "benchmarks" and parts[2] == "models":
            benchmark = self._found("benchmarks", int(parts[1]))
            approved = any(self._latest_status(i, benchmark["id"]) == rules.APPROVED
                           for i, d in self.world["datasets"].items() if d["owner"] == me)
            rules.require(rules.can_list_benchmark_models(self.user, benchmark, approved))
            rows = [r for r in self.world["model_assocs"] if r["benchmark"] == benchmark["id"]]
            fields = ("model", "approval_status", "priority", "created_at")
            return [{k: r.get(k, 0 if k == "priority" else None) for k in fields}
                    for r in sorted(rows, key=lambda r: -r.get("priority", 0))]
        if len(parts) == 1 and parts[0] in self.world:
            return [self._public(parts[0], r) for r in self.world[parts[0]].values()]
        raise NotFound()

    # -- writes -------------------------------------------------------------------------------------------
    def _create(self, path: str, body: dict) -> dict:
        if path == "datasets/benchmarks/":
            return self._land("dataset_assocs", self._association(body))
        if path == "results/":
            return self._land("results", self._result(body))
        if path == "datasets/":
            self._related("mlcubes", body.get("data_preparation_mlcube"), "data_preparation_mlcube")
            body.pop("state", None)  # every dataset starts in DEVELOPMENT
            rid = max(self.world["datasets"], default=0) + 1
            return self._land("datasets", {**body, "id": rid, "owner": self.owner, "state": rules.DEVELOPMENT,
                                           "report": {}, "is_valid": True, "modified_at": self._stamp()})
        raise NotFound()

    def _update(self, path: str, body: dict) -> dict:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 4 and parts[0] == "datasets" and parts[2] == "benchmarks":
            return self._decide(int(parts[1]), int(parts[3]), body)
        if parts[0] == "results" and len(parts) == 2:
            result = self.world["results"].get(int(parts[1]))
            if result is None:
                raise NotFound() if rules.is_admin(self.user) else Forbidden()
            rules.require(rules.can_edit_result(self.user, result, self.world["datasets"].get(result["dataset"])))
            result.update(rules.check_result_update(result, body, self._stamp()))
            return result
        if parts[0] == "datasets" and len(parts) == 2:
            current = self.world["datasets"].get(int(parts[1]))
            if current is None:
                raise NotFound() if rules.is_admin(self.user) else Forbidden()
            rules.require(rules.can_edit_owned(self.user, current))
            uid = body.get("generated_uid", current.get("generated_uid"))
            taken = any(d["state"] == rules.OPERATION and d.get("generated_uid") == uid and i != current["id"]
                        for i, d in self.world["datasets"].items())
            changes = rules.check_dataset_update(current, body, taken)
            if changes:
                current.update(changes, modified_at=self._stamp())
            return current
        raise NotFound()

    def _association(self, body: dict) -> dict:
        """POST datasets/benchmarks/: the new history row, with the status the server's rules give it."""
        dataset = self._related("datasets", body.get("dataset"), "dataset")
        benchmark = self._related("benchmarks", body.get("benchmark"), "benchmark")
        rules.require(rules.can_request_dataset_association(self.user, dataset, benchmark))
        rules.check_dataset_association_create(dataset, benchmark)
        history = self._history(dataset["id"], benchmark["id"])
        status = rules.association_status_on_create(
            initiator=self.user, requested=body.get("approval_status", rules.PENDING),
            latest=history[-1] if history else None, subject_owner=self.world["users"][dataset["owner"]],
            benchmark=benchmark, mode_field="dataset_auto_approval_mode",
            allow_list_field="dataset_auto_approval_allow_list")
        stamp = self._stamp()
        return {"id": len(self.world["dataset_assocs"]) + 1, "dataset": dataset["id"], "benchmark": benchmark["id"],
                "metadata": body.get("metadata", {}), "approval_status": status, "initiated_by": self.owner,
                "created_at": stamp, "modified_at": stamp, "approved_at": rules.approved_at_for(status, stamp)}

    def _decide(self, dataset_id: int, benchmark_id: int, body: dict) -> dict:
        """PUT datasets/{D}/benchmarks/{B}/ {approval_status}: the decision on the latest row."""
        dataset, benchmark = self._pair(dataset_id, benchmark_id)
        history = self._history(dataset["id"], benchmark["id"])
        if not history:
            raise NotFound()
        latest = history[-1]
        if "approval_status" in body:
            rules.check_association_decision(self.user, latest, body["approval_status"])
            stamp = self._stamp()
            latest.update(approval_status=body["approval_status"], approved_at=stamp, modified_at=stamp)
        return latest

    def _result(self, body: dict) -> dict:
        """POST results/: the dataset's owner only, and a model other than the reference needs both approvals."""
        dataset = self.world["datasets"].get(body.get("dataset"))
        if not rules.is_admin(self.user):
            rules.require(dataset is not None and rules.can_create_result(self.user, dataset))
        benchmark = self._related("benchmarks", body.get("benchmark"), "benchmark")
        self._related("models", body.get("model"), "model")
        model_rows = [r for r in self.world["model_assocs"]
                      if r["model"] == body["model"] and r["benchmark"] == benchmark["id"]]
        latest_model = max(model_rows, key=lambda r: r["created_at"]) if model_rows else None
        history = self._history(body["dataset"], benchmark["id"])
        rules.check_result_create(benchmark, body["model"], history[-1] if history else None, latest_model)
        rid = max(self.world["results"], default=0) + 1
        return {**body, "id": rid, "owner": self.owner, "finalized": False, "created_at": self._stamp()}

    def approve(self, dataset: int, benchmark: int = 1, status: str = "APPROVED") -> None:
        """The benchmark owner's decision (not through the runner), under the server's rules."""
        self._answer("PUT", f"datasets/{dataset}/benchmarks/{benchmark}/",
                     lambda: self.as_user(BENCHMARK_OWNER)._decide(dataset, benchmark, {"approval_status": status}))

    # -- the server's lookups ---------------------------------------------------------------------------------
    def _found(self, table: str, rid: int) -> dict:
        record = self.world[table].get(rid)
        if record is None:
            raise NotFound()
        return record

    def _related(self, table: str, rid: Any, field: str) -> dict:
        record = self.world[table].get(rid) if isinstance(rid, int) else None
        if record is None:
            raise Invalid({field: [f'Invalid pk "{rid}" - object does not exist.']})
        return record

    def _pair(self, dataset_id: int, benchmark_id: int) -> tuple[dict, dict]:
        dataset, benchmark = self._found("datasets", dataset_id), self._found("benchmarks", benchmark_id)
        rules.require(rules.can_see_dataset_association(self.user, dataset, benchmark))
        return dataset, benchmark

    def _history(self, dataset: int, benchmark: int) -> list[dict]:
        """The pair's rows, oldest first (the last one is the latest)."""
        rows = [r for r in self.world["dataset_assocs"] if r["dataset"] == dataset and r["benchmark"] == benchmark]
        return sorted(rows, key=lambda r: (r.get("created_at") or "", r.get("id") or 0))

    def _latest_status(self, dataset: int, benchmark: int) -> str | None:
        rows = self._history(dataset, benchmark)
        return rows[-1]["approval_status"] if rows else None

    def _view(self, table: str, record: dict) -> dict:
        if table == "datasets":
            prep = self.world["mlcubes"].get(record.get("data_preparation_mlcube"))
            return record if rules.sees_full_dataset(self.user, record, prep) else rules.public_dataset(record)
        if table == "benchmarks":
            return record if rules.sees_full_benchmark(self.user, record) else rules.public_benchmark(record)
        return record

    @staticmethod
    def _public(table: str, record: dict) -> dict:
        return {"datasets": rules.public_dataset, "benchmarks": rules.public_benchmark}.get(table, dict)(record)

    def _stamp(self) -> str:
        self._shared.clock += 1
        return f"2026-11-23T10:00:{self._shared.clock:05d}Z"

    def _land(self, table: str, record: dict) -> dict:
        """Store a created record, or lose the answer (ServerWriteUncertain) after landing it or not."""
        if self._shared.uncertain_posts:
            self._shared.uncertain_posts -= 1
            if self._shared.uncertain_lands:
                self._store(table, record)
            raise ServerWriteUncertain(f"POST /{table}: no answer within 30 s")
        self._store(table, record)
        return record

    def _store(self, table: str, record: dict) -> None:
        if table == "dataset_assocs":
            self.world[table].append(record)
        else:
            self.world[table][record["id"]] = record

    # -- helpers --------------------------------------------------------------------------------------------
    def _answer(self, method: str, path: str, work: Callable[[], Any]) -> Any:
        """Run `work` as the server would; a rule's refusal is the ServerError the real client raises."""
        try:
            return work()
        except ApiError as e:
            raise refusal(method, path, e.status, e.body) from None

    def _count(self, method: str, path: str, body: Any) -> None:
        self._shared.request_count += 1
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


class Unauthorized:
    """The registry seen with a token it does not know: every request is answered 401, as the real server does."""

    request_count = 0

    def __init__(self, calls: list):
        self.calls = calls

    def _refuse(self, method: str, path: str, body: Any = None):
        self.request_count += 1
        self.calls.append((method, path, body))
        raise refusal(method, path, 401, {"detail": "Invalid token."})

    def get(self, path: str, params: Mapping | None = None) -> Any:
        self._refuse("GET", path, params)

    def list(self, path: str) -> list:
        self._refuse("GET", path)

    def create(self, path: str, body: Mapping) -> dict:
        self._refuse("POST", path, dict(body))

    def update(self, path: str, body: Mapping) -> dict:
        self._refuse("PUT", path, dict(body))


class FakeRunner:
    """A ContainerRunner that does what the chest X-ray prep does, on plain files, with injectable failures."""

    def __init__(self, *, fail: Mapping[str, int] | None = None, image_ok: bool = True, stats: Any = None):
        self.fail = dict(fail or {})  # task, or "image:task" -> exit code
        self.metrics: dict = {"Accuracy": 0.75, "AUC": 0.8125}
        self.interrupt: str | None = None  # task (or "image:task") during which Ctrl-C arrives...
        self.interrupt_skips = 0  # ...after this many runs of it went through
        # How the Ctrl-C surfaces: KeyboardInterrupt itself, or Interrupted, as DockerRunner raises it once it
        # has stopped the container.
        self.interrupt_as: type[BaseException] = KeyboardInterrupt
        self.image_ok = image_ok
        self.stats = stats  # None: computed from the prepared files
        self.runs: list[tuple[str, dict]] = []
        self.checked = 0

    def check_image(self, spec, *, on_progress=None) -> str:
        self.checked += 1
        if not self.image_ok:
            raise ImageMismatch(f"image {spec.image} is sha256:00, but the container record expects {spec.image_hash}")
        return spec.image_hash

    def adopts(self, spec, task: str, volumes: Mapping[str, Path], *, log_path: Path) -> bool:
        return False

    def run_task(self, spec, task: str, volumes: Mapping[str, Path], *, log_path: Path, on_line=None,
                 inactivity_timeout=None, timeout=None) -> TaskRun:
        self.runs.append((task, dict(volumes)))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"running {task}\n")
        if on_line is not None:
            on_line(f"{task}: working")
        if self.interrupt in (task, f"{spec.image}:{task}") and self._skipped_enough():
            if self.interrupt_as is Interrupted:
                raise Interrupted(f"interrupted while running {task} of {spec.image}; the container was stopped",
                                  hint="run again to resume")
            raise self.interrupt_as
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

    def _skipped_enough(self) -> bool:
        if self.interrupt_skips:
            self.interrupt_skips -= 1
            return False
        return True

    def stop_all(self) -> None:
        self.stopped_all = True

    def tasks_run(self) -> list[str]:
        return [t for t, _ in self.runs]
