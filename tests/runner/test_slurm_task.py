"""The Slurm job's entry point starts lean (every job pays its imports, on the cluster's cores) and still checks
what it runs: a task.json record skips only the JSON Schema pass, which the submitter made; MedPerf's rules hold."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runner.container_spec import ContainerSpec
from runner.errors import ContainerSpecError

RECORD = {"name": "m", "image_hash": "sha256:" + "a" * 64, "container_config": {
    "container_type": "DockerImage", "image": "example/model:1", "tasks": {"infer": {
        "input_volumes": {"data_path": {"mount_path": "/data", "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": "/out", "type": "directory"}}}}}}


def test_the_job_loads_neither_the_submitters_modules_nor_jsonschema():
    probe = ("import json, sys\n"
             "import runner.clients.slurm_task\n"
             "from runner.container_spec import ContainerSpec\n"
             f"ContainerSpec.from_record(json.loads({json.dumps(json.dumps(RECORD))}), schema_checked=True)\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('runner', 'jsonschema'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert "runner.clients.containers" in loaded  # the probe did load the job's code
    for heavy in ("jsonschema", "runner.clients.slurm", "runner.model", "runner.apply", "runner.cli"):
        assert heavy not in loaded, heavy


def test_a_record_whose_schema_was_checked_still_meets_medperfs_rules():
    record = json.loads(json.dumps(RECORD))
    record["container_config"]["tasks"]["infer"]["output_volumes"]["data_path"] = {"mount_path": "/o",
                                                                                  "type": "directory"}
    with pytest.raises(ContainerSpecError, match="data_path declared as both input and output volume"):
        ContainerSpec.from_record(record, schema_checked=True)
    assert ContainerSpec.from_record(RECORD, schema_checked=True) == ContainerSpec.from_record(RECORD)
