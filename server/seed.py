"""`seed --demo data`: the tutorial's world, created through the API itself as MedPerf's seed script does.

Users testadmin (admin), testbo, testmo, testdo, testdo2 get API tokens; testbo registers the data
preparation container, the reference model and the metrics container and the benchmark `chestxray`
(approved by testadmin, then OPERATION); testmo registers the second model and testbo approves its
association. On a fresh database the ids match MedPerf's seed: benchmark 1, models 1 and 2.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from server import auth, store
from server.inprocess import ApiCaller

TESTADMIN, TESTBO, TESTMO, TESTDO, TESTDO2 = (
    "testadmin@example.com", "testbo@example.com", "testmo@example.com", "testdo@example.com", "testdo2@example.com",
)
USERS = ((TESTADMIN, True), (TESTBO, False), (TESTMO, False), (TESTDO, False), (TESTDO2, False))  # (email, admin)
COMPONENT_KEYS = ("prep", "reference_model", "metrics", "second_model")
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
        "prep": record("chestxray_prep", prep_config, {
            "labels_list": LABELS, "image_column_id": "Image ID", "label_column_id": "Label",
            "image_output_size": [28, 28, 1]}),
        "reference_model": record("chestxray_cnn", _model_config("medperf-apply/chestxray-cnn:latest"),
                                  {"in_channels": 1, "num_classes": 14, "batch_size": 5}),
        "metrics": record("chestxray_metrics", metrics_config, {"threshold": 0.5}),
        "second_model": record("chestxray_linear", _model_config("medperf-apply/chestxray-linear:latest"),
                               {"num_classes": 14, "batch_size": 5}),
    }


def load_components(path: str | Path | None) -> dict:
    """Read a components file (`{"prep": R, "reference_model": R, "metrics": R, "second_model": R}`)."""
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
    if problems:
        raise SeedError(f"{path}: " + "; ".join(problems))
    return {key: {k: data[key][k] for k in RECORD_KEYS} for key in COMPONENT_KEYS}


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


def seed_demo(app, components: dict | None = None) -> dict[str, str]:
    """Create the tutorial world in the (empty) database behind `app`; return {email: token}."""
    components = components or default_components()
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
        "demo_dataset_tarball_url": "",
        "demo_dataset_tarball_hash": "",
        "demo_dataset_generated_uid": "",
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
    return tokens


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
