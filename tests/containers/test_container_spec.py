"""ContainerSpec: parsing a server container record and every way it can be malformed (no Docker needed)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

import schemas
from runner.container_spec import SUPPLIED_KEYS, ContainerSpec, check_shm_size, normalize_gpus
from runner.errors import ContainerSpecError

HASH = "sha256:" + "a" * 64
CONFIG = {
    "container_type": "DockerImage",
    "image": "example/prep:1.0",
    "tasks": {
        "prepare": {
            "run_args": {"command": "python3 /project/prepare.py --flag 'two words'",
                         "environment": {"A": 1, "B": True}, "gpus": "all", "shm_size": "2g"},
            "input_volumes": {"data_path": {"mount_path": "/mlcommons/volumes/raw_data", "type": "directory"}},
            "output_volumes": {"output_path": {"mount_path": "/mlcommons/volumes/data", "type": "directory"},
                               "report_file": {"mount_path": "/mlcommons/volumes/report/report.yaml", "type": "file"}},
        },
        "sanity_check": {"run_args": {"entrypoint": ["python3"], "command": ["/x.py"]}},
        "statistics": None,
    },
}


def record(**changes) -> dict:
    base = {"id": 3, "name": "chestxray_prep", "container_config": copy.deepcopy(CONFIG), "image_hash": HASH,
            "parameters_config": {"labels_list": ["a"]}, "additional_files_tarball_url": "",
            "additional_files_tarball_hash": ""}
    base.update(changes)
    return base


def test_parses_a_server_record():
    spec = ContainerSpec.from_record(record())
    assert (spec.id, spec.name, spec.image, spec.image_hash) == (3, "chestxray_prep", "example/prep:1.0", HASH)
    assert spec.parameters == {"labels_list": ["a"]}
    assert spec.tasks() == {"prepare", "sanity_check", "statistics"}
    assert spec.declares("prepare", "report_file") and spec.declares("prepare", "data_path")
    assert not spec.declares("prepare", "metadata_path") and not spec.declares("infer", "data_path")
    task = spec.task("prepare")
    assert task.command == ("python3", "/project/prepare.py", "--flag", "two words")
    assert dict(task.environment) == {"A": "1", "B": "true"}
    assert (task.gpus, task.shm_size, task.entrypoint) == ("all", "2g", None)
    assert task.volume("report_file").type == "file" and task.volume("report_file").output
    assert not task.volume("data_path").output
    assert spec.task("sanity_check").entrypoint == ("python3",) and spec.task("statistics").volumes == ()


def test_parses_config_given_as_yaml_or_json_text_and_a_model_record():
    assert ContainerSpec.from_record(record(container_config=json.dumps(CONFIG))).image == "example/prep:1.0"
    model = {"id": 9, "name": "model", "type": "CONTAINER", "container": record()}
    assert ContainerSpec.from_record(model).name == "chestxray_prep"


def test_a_docker_archive_is_an_image_tarball_by_url_pinned_by_its_sha256():
    archive = {**copy.deepcopy(CONFIG), "container_type": "DockerArchive", "image": "direct:https://x.org/m.tar"}
    spec = ContainerSpec.from_record(record(container_config=archive, image_hash="C" * 64))  # MedPerf: bare hex
    assert spec.is_archive and spec.image == "https://x.org/m.tar" and spec.image_hash == "sha256:" + "c" * 64
    assert ContainerSpec.from_record(record(container_config=archive, image_hash="sha256:" + "c" * 64)).is_archive
    assert not ContainerSpec.from_record(record()).is_archive
    for image, image_hash, message in (("x/y:1", "c" * 64, "is not a file://, http:// or https:// URL"),
                                       ("synapse:syn1", "c" * 64, "is not a file://"),
                                       ("https://x.org/m.tar", "c" * 63, "is not 'sha256:'")):
        with pytest.raises(ContainerSpecError) as info:
            ContainerSpec.from_record(record(container_config={**archive, "image": image}, image_hash=image_hash))
        assert message in str(info.value)


@pytest.mark.parametrize(("value", "wanted"), [
    (None, None), ("", None), ("0", None), (0, None), ("all", "all"), ("2", 2), (3, 3),
    ("device=0,2", ("0", "2")), ("device=GPU-1f2e", ("GPU-1f2e",)),
])
def test_gpus_as_medperf_reads_them(value, wanted):
    assert normalize_gpus(value) == wanted


@pytest.mark.parametrize("value", ["some", "device=", "device=0,,1", -1, True, "1.5", ["0"]])
def test_gpus_medperf_refuses(value):
    with pytest.raises(ContainerSpecError, match="is not all, a count, or device="):
        normalize_gpus(value)


@pytest.mark.parametrize(("value", "ok"), [("2g", True), ("512m", True), ("1.5gb", True), (1048576, True),
                                            ("lots", False), (0, False), ("-1g", False), (None, True)])
def test_shm_sizes(value, ok):
    if ok:
        check_shm_size(value)
    else:
        with pytest.raises(ContainerSpecError, match="is not a size"):
            check_shm_size(value)


def test_additional_files_fields():
    spec = ContainerSpec.from_record(record(additional_files_tarball_url="direct:https://x.org/w.tar.gz",
                                            additional_files_tarball_hash="B" * 64))
    assert (spec.additional_files_url, spec.additional_files_hash) == ("https://x.org/w.tar.gz", "b" * 64)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(container_config=None), "container_config is missing"),
    (lambda r: r["container_config"].pop("image"), "'image' is a required property"),
    (lambda r: r["container_config"].pop("tasks"), "'tasks' is a required property"),
    (lambda r: r["container_config"].update(container_type="SingularityFile"), "SingularityFile is unsupported"),
    (lambda r: r["container_config"].update(container_type="mlcube"), "is not one of"),
    (lambda r: r["container_config"]["tasks"]["prepare"]["run_args"].update(ports=[80]), "'ports' was unexpected"),
    (lambda r: r["container_config"]["tasks"]["prepare"]["input_volumes"]["data_path"].pop("type"),
     "'type' is a required property"),
    (lambda r: r["container_config"]["tasks"]["prepare"]["input_volumes"]["data_path"].update(type="socket"),
     "'socket' is not one of"),
    (lambda r: r["container_config"]["tasks"]["prepare"]["input_volumes"]["data_path"].update(mount_path="rel/x"),
     "does not match"),
    (lambda r: r["container_config"]["tasks"]["prepare"]["input_volumes"].update(
        output_path={"mount_path": "/o", "type": "directory"}), "output_path declared as both input and output"),
    (lambda r: r["container_config"]["tasks"]["prepare"]["input_volumes"].update(
        labels_path={"mount_path": "/mlcommons/volumes/data/", "type": "directory"}), "share mount path"),
    (lambda r: r.update(parameters_config=["not", "a", "mapping"]), "parameters_config must be a mapping"),
    (lambda r: r.update(image_hash=""), "image_hash '' is not"),
    (lambda r: r.update(image_hash="a" * 64), "is not 'sha256:'"),
    (lambda r: r.update(additional_files_tarball_url="synapse:syn123", additional_files_tarball_hash="a" * 64),
     "not a file://, http:// or https:// URL"),
    (lambda r: r.update(additional_files_tarball_url="file:///w.tar.gz"), "is not a SHA-256 hex digest"),
])
def test_malformed_records_are_refused_with_a_precise_message(change, message):
    bad = record()
    change(bad)
    with pytest.raises(ContainerSpecError, match=None) as info:
        ContainerSpec.from_record(bad)
    assert message in str(info.value)
    assert "container chestxray_prep" in str(info.value)


def test_every_schema_problem_is_listed_at_once():
    bad = record()
    bad["container_config"].pop("image")
    bad["container_config"]["tasks"]["prepare"]["run_args"]["ports"] = [1]
    text = str(pytest.raises(ContainerSpecError, ContainerSpec.from_record, bad).value)
    assert "'image' is a required property" in text and "'ports' was unexpected" in text
    assert "$.tasks.prepare.run_args" in text


def test_unknown_task_is_an_error_naming_the_declared_ones():
    spec = ContainerSpec.from_record(record())
    with pytest.raises(ContainerSpecError, match="has no task 'infer' .it declares: prepare, sanity_check"):
        spec.task("infer")


def test_supplied_keys_are_medperfs():
    assert SUPPLIED_KEYS["evaluate"] == {"predictions", "labels", "output_path", "local_outputs_path"}
    assert SUPPLIED_KEYS["infer"] == {"data_path", "output_path"}


def test_example_configs_are_valid():
    import yaml

    root = Path(__file__).resolve().parents[2] / "examples" / "chestxray"
    for folder in ("prep", "cnn", "linear", "metrics"):
        config = yaml.safe_load((root / folder / "container_config.yaml").read_text())
        spec = ContainerSpec.from_record({"name": folder, "container_config": config, "image_hash": HASH})
        for task in spec.tasks():
            supplied = SUPPLIED_KEYS[task] | {"parameters_file", "additional_files"}
            assert {v.key for v in spec.task(task).volumes} <= supplied, (folder, task)
    assert schemas.load("container_config")["$schema"].endswith("2020-12/schema")


def test_planning_modules_do_not_import_docker():
    code = ("import sys, runner.container_spec, runner.clients.containers, runner.clients.files; "
            "sys.exit(1 if 'docker' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_spec_is_hashable_and_independent_of_the_record():
    raw = record()
    spec = ContainerSpec.from_record(raw)
    raw["container_config"]["tasks"].clear()
    raw["parameters_config"]["labels_list"].append("b")
    assert spec.tasks() == {"prepare", "sanity_check", "statistics"} and spec.parameters == {"labels_list": ["a"]}
    assert len({spec, ContainerSpec.from_record(record())}) == 1
