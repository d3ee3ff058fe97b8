"""Test suite for medperf-apply; one sub-package per area."""
