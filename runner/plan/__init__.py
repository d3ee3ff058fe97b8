"""PURE: (Manifest, Observation) -> Plan (and a BenchmarkOwner's: owner.py). No I/O here: no HTTP, no Docker, no files (a test enforces it)."""

from runner.plan.dataset import PREPARE_TASKS
from runner.plan.owner import owner_plan
from runner.plan.planner import digest, plan
from runner.plan.targets import Selection, select

__all__ = ["PREPARE_TASKS", "Selection", "digest", "owner_plan", "plan", "select"]
