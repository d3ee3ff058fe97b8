"""PURE: (Manifest, Observation) -> Plan. No I/O here: no HTTP, no Docker, no files (a test enforces it)."""

from runner.plan.dataset import PREPARE_TASKS
from runner.plan.planner import digest, plan
from runner.plan.targets import Selection, select

__all__ = ["PREPARE_TASKS", "Selection", "digest", "plan", "select"]
