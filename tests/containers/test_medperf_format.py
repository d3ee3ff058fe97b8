"""A container written for MedPerf (the container_config of reference 5.1, MedPerf's default mount paths,
string commands, an entrypoint, environment and shm_size, additional files) runs unchanged."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
import yaml

from runner.container_spec import ContainerSpec
from tests.containers.helpers import build_test_image

pytestmark = pytest.mark.docker

IMAGE = "medperf-apply/test-medperf-format:latest"

# MedPerf's layout, as a MedPerf container author writes it (YAML text, as stored on the server).
CONFIG = """
container_type: DockerImage
image: medperf-apply/test-medperf-format:latest
tasks:
  prepare:
    run_args:
      command: "python3 /app/task.py prepare"
      environment: {GREETING: hello, WORKERS: 2}
      shm_size: "96m"
    input_volumes:
      data_path: {mount_path: /mlcommons/volumes/raw_data, type: directory}
      labels_path: {mount_path: /mlcommons/volumes/raw_labels, type: directory}
      parameters_file: {mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file}
      additional_files: {mount_path: /mlcommons/volumes/additional_files, type: directory}
    output_volumes:
      output_path: {mount_path: /mlcommons/volumes/data, type: directory}
      output_labels_path: {mount_path: /mlcommons/volumes/labels, type: directory}
      metadata_path: {mount_path: /mlcommons/volumes/metadata, type: directory}
      report_file: {mount_path: /mlcommons/volumes/report/report.yaml, type: file}
  sanity_check:
    run_args: {command: "python3 /app/task.py sanity_check"}
    input_volumes:
      data_path: {mount_path: /mlcommons/volumes/data, type: directory}
      labels_path: {mount_path: /mlcommons/volumes/labels, type: directory}
      metadata_path: {mount_path: /mlcommons/volumes/metadata, type: directory}
      parameters_file: {mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file}
  statistics:
    run_args: {command: "python3 /app/task.py statistics"}
    input_volumes:
      data_path: {mount_path: /mlcommons/volumes/data, type: directory}
      labels_path: {mount_path: /mlcommons/volumes/labels, type: directory}
      metadata_path: {mount_path: /mlcommons/volumes/metadata, type: directory}
    output_volumes:
      output_path: {mount_path: /mlcommons/volumes/statistics/statistics.yaml, type: file}
  infer:
    run_args: {entrypoint: python3, command: "/app/task.py infer"}
    input_volumes:
      data_path: {mount_path: /mlcommons/volumes/data, type: directory}
      additional_files: {mount_path: /mlcommons/volumes/additional_files, type: directory}
    output_volumes:
      output_path: {mount_path: /mlcommons/volumes/predictions, type: directory}
  evaluate:
    run_args: {command: "python3 /app/task.py evaluate"}
    input_volumes:
      predictions: {mount_path: /mlcommons/volumes/predictions, type: directory}
      labels: {mount_path: /mlcommons/volumes/labels, type: directory}
      parameters_file: {mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file}
    output_volumes:
      output_path: {mount_path: /mlcommons/volumes/results/results.yaml, type: file}
      local_outputs_path: {mount_path: /mlcommons/volumes/local_outputs, type: directory}
"""

# Reports what it sees (one JSON line) and does a small version of each task's job.
TASK = r'''
import json, os, sys
V = "/mlcommons/volumes"
task = sys.argv[1]
mounts = {}
for name in sorted(os.listdir(V)):
    path = os.path.join(V, name)
    mounts[name] = {"writable": os.access(path, os.W_OK), "dir": os.path.isdir(path)}
params = open(V + "/parameters/parameters_file.yaml").read() if os.path.isdir(V + "/parameters") else None
extra = sorted(os.listdir(V + "/additional_files")) if os.path.isdir(V + "/additional_files") else None
files = {f: os.access(V + "/" + f, os.W_OK) for f in ("parameters/parameters_file.yaml", "report/report.yaml",
         "statistics/statistics.yaml", "results/results.yaml") if os.path.isfile(V + "/" + f)}
shm = os.statvfs("/dev/shm")
print("SEEN " + json.dumps({"task": task, "mounts": mounts, "files": files, "params": params, "additional_files": extra,
      "env": {k: os.environ.get(k) for k in ("GREETING", "WORKERS")}, "shm": shm.f_blocks * shm.f_frsize}), flush=True)
if task == "prepare":
    names = sorted(os.listdir(V + "/raw_data"))
    for n in names:
        open(f"{V}/data/{n}", "w").write(open(f"{V}/raw_data/{n}").read().upper())
    open(V + "/labels/labels.txt", "w").write(open(V + "/raw_labels/labels.txt").read())
    open(V + "/metadata/meta.json", "w").write(json.dumps({"n": len(names)}))
    open(V + "/report/report.yaml", "w").write("status: done\n")
elif task == "statistics":
    open(V + "/statistics/statistics.yaml", "w").write(f"num_cases: {len(os.listdir(V + '/data'))}\n")
elif task == "infer":
    weight = open(V + "/additional_files/weights/w.txt").read().strip()
    open(V + "/predictions/predictions.json", "w").write(json.dumps({n: weight for n in os.listdir(V + "/data")}))
elif task == "evaluate":
    preds = json.load(open(V + "/predictions/predictions.json"))
    open(V + "/results/results.yaml", "w").write(f"count: {len(preds)}\n")
    open(V + "/local_outputs/private.txt", "w").write("stays here")
'''


@pytest.fixture(scope="module")
def medperf_container(docker_client, base_image, tmp_path_factory):
    image_id = build_test_image(docker_client, base_image, IMAGE, {"task.py": TASK})
    folder = tmp_path_factory.mktemp("additional")
    tarball = folder / "additional_files.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:  # as `tar -czf additional_files.tar.gz -C <folder> .`
        info = tarfile.TarInfo("./weights/w.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"0.7"))
    record = {"id": 7, "name": "medperf_format", "container_config": CONFIG, "image_hash": image_id,
              "parameters_config": {"threshold": 0.5, "labels": ["a", "b"]},
              "additional_files_tarball_url": tarball.as_uri(),
              "additional_files_tarball_hash": hashlib.sha256(tarball.read_bytes()).hexdigest()}
    return ContainerSpec.from_record(record)


def _seen(lines: list[str]) -> dict:
    return json.loads(next(line for line in lines if line.startswith("SEEN "))[5:])


def test_medperf_format_container_runs_every_task_unchanged(medperf_container, runner, tmp_path):
    spec = medperf_container
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    (raw / "labels").mkdir()
    (raw / "images" / "case1").write_text("abc")
    (raw / "images" / "case2").write_text("def")
    (raw / "labels" / "labels.txt").write_text("case1 a\ncase2 b\n")
    ds = tmp_path / "dataset"
    seen = {}

    def run(task, volumes):
        lines: list[str] = []
        runner.run_task(spec, task, volumes, log_path=tmp_path / "logs" / f"{task}.log", on_line=lines.append)
        seen[task] = _seen(lines)

    # exactly the keys MedPerf supplies per task (reference 5.1)
    run("prepare", {"data_path": raw / "images", "labels_path": raw / "labels", "output_path": ds / "data",
                    "output_labels_path": ds / "labels", "metadata_path": ds / "metadata",
                    "report_file": ds / "report.yaml"})
    run("sanity_check", {"data_path": ds / "data", "labels_path": ds / "labels", "metadata_path": ds / "metadata"})
    run("statistics", {"data_path": ds / "data", "labels_path": ds / "labels", "metadata_path": ds / "metadata",
                       "output_path": ds / "statistics.yaml"})
    run("infer", {"data_path": ds / "data", "output_path": tmp_path / "predictions"})
    run("evaluate", {"predictions": tmp_path / "predictions", "labels": ds / "labels",
                     "output_path": tmp_path / "results.yaml", "local_outputs_path": tmp_path / "local"})

    assert (ds / "data" / "case1").read_text() == "ABC"
    assert json.loads((ds / "metadata" / "meta.json").read_text()) == {"n": 2}
    assert (ds / "report.yaml").read_text() == "status: done\n"
    assert yaml.safe_load((ds / "statistics.yaml").read_text()) == {"num_cases": 2}
    assert json.loads((tmp_path / "predictions" / "predictions.json").read_text()) == {"case1": "0.7", "case2": "0.7"}
    assert yaml.safe_load((tmp_path / "results.yaml").read_text()) == {"count": 2}
    assert (tmp_path / "local" / "private.txt").read_text() == "stays here"

    prepare = seen["prepare"]
    assert prepare["mounts"] == {
        "additional_files": {"writable": False, "dir": True}, "data": {"writable": True, "dir": True},
        "labels": {"writable": True, "dir": True}, "metadata": {"writable": True, "dir": True},
        "parameters": {"writable": False, "dir": True},  # folders holding file mounts belong to the image
        "raw_data": {"writable": False, "dir": True}, "raw_labels": {"writable": False, "dir": True},
        "report": {"writable": False, "dir": True}}
    assert prepare["files"] == {"parameters/parameters_file.yaml": False, "report/report.yaml": True}
    assert seen["statistics"]["files"] == {"statistics/statistics.yaml": True}
    assert seen["evaluate"]["files"] == {"parameters/parameters_file.yaml": False, "results/results.yaml": True}
    assert yaml.safe_load(prepare["params"]) == {"threshold": 0.5, "labels": ["a", "b"]}
    assert prepare["additional_files"] == ["weights"]
    assert prepare["env"] == {"GREETING": "hello", "WORKERS": "2"}
    assert prepare["shm"] == 96 * 1024 * 1024
    assert seen["sanity_check"]["mounts"]["data"]["writable"] is False
    assert seen["sanity_check"]["env"] == {"GREETING": None, "WORKERS": None}  # environment only when asked
    assert seen["infer"]["params"] is None and seen["infer"]["mounts"].keys() == {"additional_files", "data",
                                                                                  "predictions"}
    assert seen["evaluate"]["mounts"]["predictions"]["writable"] is False
