"""The example images' build record (examples/chestxray/build/components.json, written by `make images`), which
every end-to-end test needs: missing, it is a skip, or a failure where the Docker tests are required."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

COMPONENTS = Path(__file__).resolve().parents[2] / "examples" / "chestxray" / "build" / "components.json"


def require_images() -> None:
    """Skip (fail under MEDPERF_REQUIRE_DOCKER=1) unless `make images` has written COMPONENTS."""
    if not COMPONENTS.exists():
        msg = f"{COMPONENTS} is missing: run `make images` first"
        if os.environ.get("MEDPERF_REQUIRE_DOCKER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
