"""`seed --demo data`: the tutorial's world, created through the API itself as MedPerf's seed script does.

Users testadmin (admin), testbo, testmo, testdo, testdo2 get API tokens; testbo registers the data
preparation container, the reference model and the metrics container and the benchmark `chestxray`
(approved by testadmin, then OPERATION); testmo registers the second model and testbo approves its
association. On a fresh database the ids match MedPerf's seed: benchmark 1, models 1 and 2. With
`archive_model`, testmo also registers the components' image-archive model (DockerArchive) as model 3, approved.

Every record is one MedPerf's own server accepts unchanged: the benchmark's demo dataset fields are filled, and the
URLs of additional files, image archives and the demo dataset are http(s) (MedPerf's CLI fetches nothing else): a
components file naming its files by file:// is served over HTTP and its URLs rewritten (load_components's
`files_url`).
"""

from __future__ import annotations

import copy
import json
import urllib.parse
import urllib.request
from pathlib import Path

from server import auth, store
from server.inprocess import ApiCaller

TESTADMIN, TESTBO, TESTMO, TESTDO, TESTDO2 = (
    "testadmin@example.com", "testbo@example.com", "testmo@example.com", "testdo@example.com", "testdo2@example.com",
)
USERS = ((TESTADMIN, True), (TESTBO, False), (TESTMO, False), (TESTDO, False), (TESTDO2, False))  # (email, admin)
COMPONENT_KEYS = ("prep", "reference_model", "metrics", "second_model")
OPTIONAL_KEYS = ("archive_model",)  # a model shipped as an image archive (seeded with archive_model=True)
DEMO_KEYS = ("tarball_url", "tarball_hash", "generated_uid")
# MedPerf's own seed gives the chest X-ray benchmark its tutorial's demo dataset (never fetched by a data owner).
MEDPERF_DEMO_DATASET = {
    "tarball_url": "https://storage.googleapis.com/medperf-storage/chestxray_tutorial/demo_data.tar.gz",
    "tarball_hash": "71faabd59139bee698010a0ae3a69e16d97bc4f2dde799d9e187b94ff9157c00",
    "generated_uid": "730d2474d8f22340d9da89fa2eb925fcb95683e0",
}
RECORD_KEYS = (
    "name", "container_config", "parameters_config", "image_hash",
    "additional_files_tarball_url", "additional_files_tarball_hash",
)
PLACEHOLDER_IMAGE_HASH = "sha256:" + "0" * 64  # not a real image: `make images` writes the real ids
LABELS = [
    "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
    "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia",
]


class SeedError(Exception):
    """Seeding failed; the message says which step and what the server answered."""


def _vol(path: str, kind: str = "directory") -> dict:
    return {"mount_path": "/mlcommons/volumes/" + path, "type": kind}


_PARAMS = {"parameters_file": _vol("parameters/parameters.yaml", "file")}


def _model_config(image: str) -> dict:
    return {
        "container_type": "DockerImage",
        "image": image,
        "tasks": {
            "infer": {
                "run_args": {"command": "infer --data_path /mlcommons/volumes/data "
                             "--output_path /mlcommons/volumes/predictions"},
                "input_volumes": {"data_path": _vol("data"), **_PARAMS,
                                  "additional_files": _vol("additional_files")},
                "output_volumes": {"output_path": _vol("predictions")},
            }
        },
    }


def default_components() -> dict:
    """Built-in records for the example images (placeholder hashes: no image has been built)."""
    prep_config = {
        "container_type": "DockerImage",
        "image": "medperf-apply/chestxray-prep:latest",
        "tasks": {
            "prepare": {
                "run_args": {"command": "python3 /project/prep.py prepare"},
                "input_volumes": {"data_path": _vol("raw_data"), "labels_path": _vol("raw_labels"), **_PARAMS},
                "output_volumes": {"output_path": _vol("data"), "output_labels_path": _vol("labels")},
            },
            "sanity_check": {
                "run_args": {"command": "python3 /project/prep.py sanity_check"},
                "input_volumes": {"data_path": _vol("data"), "labels_path": _vol("labels"), **_PARAMS},
            },
            "statistics": {
                "run_args": {"command": "python3 /project/prep.py statistics"},
                "input_volumes": {"data_path": _vol("data"), "labels_path": _vol("labels"), **_PARAMS},
                "output_volumes": {"output_path": _vol("statistics/statistics.yaml", "file")},
            },
        },
    }
    metrics_config = {
        "container_type": "DockerImage",
        "image": "medperf-apply/chestxray-metrics:latest",
        "tasks": {
            "evaluate": {
                "run_args": {"command": "python3 /project/metrics.py"},
                "input_volumes": {"predictions": _vol("predictions"), "labels": _vol("labels"), **_PARAMS},
                "output_volumes": {"output_path": _vol("results/results.yaml", "file"),
                                   "local_outputs_path": _vol("local_outputs")},
            }
        },
    }

    def record(name, config, params):
        return {"name": name, "container_config": config, "parameters_config": params,
                "image_hash": PLACEHOLDER_IMAGE_HASH, "additional_files_tarball_url": "",
                "additional_files_tarball_hash": ""}

    return {
        "demo_dataset": dict(MEDPERF_DEMO_DATASET),
        "prep": record("chestxray_prep", prep_config, {
            "labels_list": LABELS, "image_column_id": "Image ID", "label_column_id": "Label",
            "image_output_size": [28, 28, 1]}),
        "reference_model": record("chestxray_cnn", _model_config("medperf-apply/chestxray-cnn:latest"),
                                  {"in_channels": 1, "num_classes": 14, "batch_size": 5}),
        "metrics": record("chestxray_metrics", metrics_config, {"threshold": 0.5}),
        "second_model": record("chestxray_linear", _model_config("medperf-apply/chestxray-linear:latest"),
                               {"num_classes": 14, "batch_size": 5}),
    }


def demo_fields(demo: dict | None = None) -> dict[str, str]:
    """A benchmark body's demo dataset fields (MedPerf's server refuses them blank or missing)."""
    demo = demo or MEDPERF_DEMO_DATASET
    return {f"demo_dataset_{k}": demo[k] for k in DEMO_KEYS}


def load_components(path: str | Path | None, files_url: str | None = None) -> dict:
    """Read a components file (`{"prep": R, "reference_model": R, "metrics": R, "second_model": R}`, optionally
    "archive_model": R and "demo_dataset": {tarball_url, tarball_hash, generated_uid}).

    file:// URLs naming files under the components file's folder become `files_url` + their relative path (that
    folder served over HTTP); without `files_url` they are refused: MedPerf's CLI downloads over http(s) only."""
    if path is None:
        return default_components()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SeedError(f"cannot read the components file {path}: {e}") from e
    problems = []
    if not isinstance(data, dict):
        raise SeedError(f"{path}: expected a JSON object with keys {', '.join(COMPONENT_KEYS)}")
    for key in COMPONENT_KEYS:
        record = data.get(key)
        if not isinstance(record, dict):
            problems.append(f"missing object {key!r}")
            continue
        missing = [k for k in RECORD_KEYS if k not in record]
        if missing:
            problems.append(f"{key}: missing {', '.join(missing)}")
    for key in OPTIONAL_KEYS:
        if key in data and not (isinstance(data[key], dict) and all(k in data[key] for k in RECORD_KEYS)):
            problems.append(f"{key}: expected a record with {', '.join(RECORD_KEYS)}")
    demo = data.get("demo_dataset", MEDPERF_DEMO_DATASET)
    if not (isinstance(demo, dict) and all(isinstance(demo.get(k), str) and demo[k].strip() for k in DEMO_KEYS)):
        problems.append(f"demo_dataset: expected non-blank {', '.join(DEMO_KEYS)}")
    if problems:
        raise SeedError(f"{path}: " + "; ".join(problems))
    out = {key: {k: data[key][k] for k in RECORD_KEYS} for key in (*COMPONENT_KEYS, *OPTIONAL_KEYS) if key in data}
    out["demo_dataset"] = {k: demo[k] for k in DEMO_KEYS}
    folder = Path(path).resolve().parent
    for key, record in out.items():
        for field, url in _urls(key, record):
            if url.startswith("file:"):
                _set_url(record, field, _served(url, folder, files_url, f"{path}: {key}.{field}"))
    return out


def _urls(key: str, record: dict) -> list[tuple[str, str]]:
    """The URLs a record points at: additional files, a DockerArchive's image, the demo dataset tarball."""
    if key == "demo_dataset":
        return [("tarball_url", record["tarball_url"])]
    found = [("additional_files_tarball_url", record.get("additional_files_tarball_url") or "")]
    config = record.get("container_config")
    if isinstance(config, dict) and config.get("container_type") == "DockerArchive":
        found.append(("container_config.image", str(config.get("image") or "")))
    return found


def _set_url(record: dict, field: str, url: str) -> None:
    if field == "container_config.image":
        record["container_config"] = {**record["container_config"], "image": url}
    else:
        record[field] = url


def files_under(path: str | Path) -> Path:
    """The folder a components file's file:// URLs must be under (served whole by `--files-url`)."""
    return Path(path).resolve().parent


def _served(url: str, folder: Path, files_url: str | None, what: str) -> str:
    local = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)).resolve()
    if not files_url:
        raise SeedError(f"{what} is {url}: MedPerf's CLI downloads files over http(s) only, so the seed never "
                        f"registers a file:// URL; serve {folder} over HTTP (e.g. python3 -m http.server --bind "
                        "127.0.0.1 --directory DIR PORT) and pass its URL as --files-url")
    if not local.is_relative_to(folder):
        raise SeedError(f"{what} is {url}, outside {folder}, which --files-url serves")
    return files_url.rstrip("/") + "/" + urllib.parse.quote(local.relative_to(folder).as_posix())


def _container_body(record: dict, state: str = "OPERATION") -> dict:
    body = copy.deepcopy(record)
    body["additional_files_tarball_url"] = body["additional_files_tarball_url"] or ""
    body["additional_files_tarball_hash"] = body["additional_files_tarball_hash"] or ""
    body["state"] = state
    return body


def _ok(step: str, expected: int, answer: tuple[int, object]):
    status, payload = answer
    if status != expected:
        raise SeedError(f"seed step '{step}' failed: HTTP {status} {json.dumps(payload)}")
    return payload


SECOND_BENCHMARK = "chestxray-external"


def seed_demo(app, components: dict | None = None, *, archive_model: bool = False,
              second_benchmark: bool = False) -> dict[str, str]:
    """Create the tutorial world in the (empty) database behind `app`; return {email: token}."""
    components = components or default_components()
    demo = components.get("demo_dataset") or MEDPERF_DEMO_DATASET
    if archive_model and "archive_model" not in components:
        raise SeedError("archive_model asked, but the components have none (build them with `make images`)")
    for key, record in components.items():
        for field, url in _urls(key, record):
            if url.startswith("file:"):
                raise SeedError(f"{key}.{field} is {url}: the seed registers http(s) URLs only (load_components "
                                "with files_url rewrites file:// ones)")
    db = app.config["medperf.db"]
    with db.connection() as conn:
        if store.count_users(conn):
            raise SeedError(f"the database {db.url} already has users: seed a fresh database")
        conn.begin_write()
        tokens = {}
        for email, is_admin in USERS:
            _user, tokens[email] = auth.create_user_with_token(conn, email, is_admin)
        conn.commit()

    admin = ApiCaller(app, tokens[TESTADMIN])
    bo = ApiCaller(app, tokens[TESTBO])
    mo = ApiCaller(app, tokens[TESTMO])

    prep = _ok("POST prep container", 201, bo.call("POST", "/mlcubes/", _container_body(components["prep"])))
    ref_record = components["reference_model"]
    ref = _ok("POST reference model", 201, bo.call("POST", "/models/", {
        "name": ref_record["name"], "type": "CONTAINER", "state": "OPERATION",
        "container": _container_body(ref_record),
    }))
    metrics = _ok("POST metrics container", 201, bo.call("POST", "/mlcubes/", _container_body(components["metrics"])))
    bench = _ok("POST benchmark", 201, bo.call("POST", "/benchmarks/", {
        "name": "chestxray",
        "description": "benchmark-sample",
        "docs_url": "",
        **demo_fields(demo),
        "data_preparation_mlcube": prep["id"],
        "reference_model": ref["id"],
        "data_evaluator_mlcube": metrics["id"],
        "dataset_auto_approval_mode": "NEVER",
    }))
    if bench["approval_status"] != "APPROVED":
        _ok("approve benchmark (admin)", 200,
            admin.call("PUT", f"/benchmarks/{bench['id']}/", {"approval_status": "APPROVED"}))
    _ok("set benchmark operational", 200, bo.call("PUT", f"/benchmarks/{bench['id']}/", {"state": "OPERATION"}))

    second_record = components["second_model"]
    second = _ok("POST second model", 201, mo.call("POST", "/models/", {
        "name": second_record["name"], "type": "CONTAINER", "state": "OPERATION",
        "container": _container_body(second_record),
    }))
    _ok("request second model association", 201, mo.call("POST", "/models/benchmarks/", {
        "model": second["id"], "benchmark": bench["id"], "approval_status": "PENDING",
        "metadata": {"key1": "value1", "key2": "value2"},
    }))
    _ok("approve second model association", 200,
        bo.call("PUT", f"/models/{second['id']}/benchmarks/{bench['id']}/", {"approval_status": "APPROVED"}))
    if archive_model:
        _model_in_benchmark(mo, bo, components["archive_model"], bench["id"], "archive model")
    if second_benchmark:
        _second_benchmark(admin, bo, mo, prep["id"], ref["id"], metrics["id"], second["id"], demo)
    return tokens


def _second_benchmark(admin: ApiCaller, bo: ApiCaller, mo: ApiCaller, prep: int, ref: int, metrics: int,
                      second_model: int, demo: dict) -> dict:
    """`chestxray-external`: chestxray's containers again, approved and operational, the second model approved."""
    bench = _ok("POST second benchmark", 201, bo.call("POST", "/benchmarks/", {
        "name": SECOND_BENCHMARK,
        "description": "the chest X-ray task on an external test population",
        "docs_url": "",
        **demo_fields(demo),
        "data_preparation_mlcube": prep,
        "reference_model": ref,
        "data_evaluator_mlcube": metrics,
        "dataset_auto_approval_mode": "NEVER",
    }))
    if bench["approval_status"] != "APPROVED":
        _ok("approve second benchmark (admin)", 200,
            admin.call("PUT", f"/benchmarks/{bench['id']}/", {"approval_status": "APPROVED"}))
    _ok("set second benchmark operational", 200, bo.call("PUT", f"/benchmarks/{bench['id']}/", {"state": "OPERATION"}))
    _ok("request second model association (second benchmark)", 201, mo.call("POST", "/models/benchmarks/", {
        "model": second_model, "benchmark": bench["id"], "approval_status": "PENDING", "metadata": {}}))
    _ok("approve second model association (second benchmark)", 200,
        bo.call("PUT", f"/models/{second_model}/benchmarks/{bench['id']}/", {"approval_status": "APPROVED"}))
    return bench


def _model_in_benchmark(owner: ApiCaller, bo: ApiCaller, record: dict, benchmark_id: int, what: str) -> dict:
    """A model registered (OPERATION) by `owner`, its association requested and approved by the benchmark owner."""
    model = _ok(f"POST {what}", 201, owner.call("POST", "/models/", {
        "name": record["name"], "type": "CONTAINER", "state": "OPERATION", "container": _container_body(record),
    }))
    _ok(f"request {what} association", 201, owner.call("POST", "/models/benchmarks/", {
        "model": model["id"], "benchmark": benchmark_id, "approval_status": "PENDING", "metadata": {}}))
    _ok(f"approve {what} association", 200, bo.call(
        "PUT", f"/models/{model['id']}/benchmarks/{benchmark_id}/", {"approval_status": "APPROVED"}))
    return model


def write_tokens(tokens: dict[str, str], path: str | Path) -> Path:
    """Write the tokens file (mode 0600, atomically) and return its absolute path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(json.dumps(tokens, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
