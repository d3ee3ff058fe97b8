"""Tests of the reconcile pipeline (runner/): planner golden cases, CLI in-process, apply with fakes, e2e."""
