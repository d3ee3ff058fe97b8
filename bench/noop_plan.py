"""No-op `medperf-apply plan` on the converged tutorial manifest: wall time of the real command and requests.

Starts the registry on loopback (seeded with the example components), converges the tutorial manifest with
the real Docker engine once, then times `medperf-apply plan` as a fresh process RUNS times and reads the
request count from its event log. Target (DESIGN 8): median under 0.5 s, at most 8 HTTP requests.
Needs `make images` (examples/chestxray/build/components.json) and a Docker engine at DOCKER_HOST.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COMPONENTS = REPO / "examples" / "chestxray" / "build" / "components.json"
MANIFEST = REPO / "manifests" / "chestxray-tutorial.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    if not COMPONENTS.exists():
        print(f"skipped: {COMPONENTS} is missing (run `make images`)")
        return 0
    from runner.cli import main as cli
    from tests.support.server import TESTDO, live_server

    exe = str(Path(sys.executable).with_name("medperf-apply"))
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp, live_server(components=COMPONENTS) as srv:
        root = Path(tmp)
        (root / "manifests").mkdir()
        manifest = root / "manifests" / MANIFEST.name
        manifest.write_text(MANIFEST.read_text())
        subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out",
                        str(root / "medperf_tutorial" / "sample_raw_data")], check=True, capture_output=True)
        env = {**os.environ, "MEDPERF_SERVER": srv.url, "MEDPERF_TOKEN": srv.tokens[TESTDO], "NO_COLOR": "1"}
        common = [str(manifest), "--state-dir", str(root / "state")]
        t = time.perf_counter()
        code = cli(["apply", "--yes", *common], stdout=io.StringIO(), stderr=io.StringIO(), environ=env)
        if code != 0:
            print(f"could not converge the tutorial manifest (exit {code})")
            return 1
        converge = time.perf_counter() - t
        times, requests = [], []
        for _ in range(args.runs):
            log = root / "events.jsonl"
            log.unlink(missing_ok=True)
            t = time.perf_counter()
            p = subprocess.run([exe, "plan", *common, "--event-log", str(log)], env=env, capture_output=True)
            times.append(time.perf_counter() - t)
            if p.returncode != 0:
                print(f"plan exited {p.returncode}: {p.stderr.decode()[-500:]}")
                return 1
            requests.append(json.loads(log.read_text().splitlines()[0])["requests"])
        med = statistics.median(times)
        print(f"converge (register, prepare, set operational): {converge:.2f} s")
        print(f"no-op plan, {args.runs} runs: median {med:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s")
        print(f"HTTP requests per no-op plan: {max(requests)}")
        print(f"ratio to target: wall {med / 0.5:.2f}x of 0.5 s, requests {max(requests)}/8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
