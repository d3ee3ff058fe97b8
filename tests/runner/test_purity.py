"""runner.plan, runner.report and runner.model are pure: importing them pulls in neither HTTP, Docker nor the server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("requests", "urllib3", "docker", "server", "sqlite3", "rich", "jsonschema", "jinja2")


@pytest.mark.parametrize("module", ["runner.plan", "runner.plan.benchmark", "runner.report.plan", "runner.report.status",
                                    "runner.model"])
def test_pure_modules_import_no_side_effect_libraries(module):
    code = (f"import sys, json; import {module}; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(FORBIDDEN)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_plan_path_of_the_cli_does_not_import_docker_or_rich():
    """A no-op plan needs neither the Docker SDK nor rich: they are imported only when a container runs."""
    code = ("import sys, json; import runner.cli, runner.reconcile, runner.observe, runner.plan, runner.report.plan, "
            "runner.console, runner.apply.applier, runner.load, runner.validate, runner.inspect, "
            "runner.report.status, runner.decide, runner.apply.benchmark, runner.apply.execution; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'docker', 'rich', 'jsonschema'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
