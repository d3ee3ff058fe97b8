"""Folder hashing: our folders_hash vs `sha256sum` over the same files, cold and with the stat cache warm.

Builds (once, then reuses) a 1 GiB tree of 5,000 files of deterministic random bytes in a known temp path,
checks our digest against a plain implementation of MedPerf's algorithm, and prints figures and ratios.
Target (DESIGN 8): at least 1.5x sha256sum on 2 cores; an unchanged re-plan under 5% of a full hash.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.hashing import HashCache, folders_hash  # noqa: E402

SEED = 20240601


def build_tree(root: Path, total: int, files: int) -> Path:
    """Write the tree unless an identical one is already there; return its data folder."""
    tree = root / "tree"
    marker = root / "tree.json"
    want = {"seed": SEED, "total": total, "files": files}
    if marker.exists() and json.loads(marker.read_text()) == want and tree.is_dir():
        return tree
    rng = random.Random(SEED)
    weights = [rng.uniform(0.1, 1.9) for _ in range(files)]
    scale = total / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[-1] += total - sum(sizes)
    print(f"building {total / 2**30:.2f} GiB in {files} files under {tree} (once) ...", file=sys.stderr)
    if marker.exists():
        marker.unlink()
    for i, size in enumerate(sizes):
        d = tree / f"site{i % 10}" / f"case{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"img{i:05d}.bin").write_bytes(rng.randbytes(size))
    marker.write_text(json.dumps(want))
    return tree


def medperf_reference(paths) -> str:
    """MedPerf's folders hash written plainly: os.walk, SHA-256 per file, sorted hex, one SHA-256."""
    digests = []
    for path in paths:
        for root, _dirs, names in os.walk(path):
            for name in names:
                h = hashlib.sha256()
                with open(os.path.join(root, name), "rb") as f:
                    for chunk in iter(lambda: f.read(65536), b""):
                        h.update(chunk)
                digests.append(h.hexdigest())
    total = hashlib.sha256()
    for d in sorted(digests):
        total.update(d.encode())
    return total.hexdigest()


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def sha256sum_all(tree: Path) -> None:
    # the file list is made outside the timing; xargs feeds it to sha256sum in as few processes as it can
    listing = tree.parent / "files.list0"
    if not listing.exists():
        names = sorted(os.path.join(r, n) for r, _d, ns in os.walk(tree) for n in ns)
        listing.write_bytes(b"\0".join(n.encode() for n in names) + b"\0")
    subprocess.run(f"xargs -0 sha256sum < '{listing}' > /dev/null", shell=True, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "medperf-apply-bench-hashing"))
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    tree = build_tree(root, args.total_mib << 20, args.files)
    cpus = len(os.sched_getaffinity(0))

    t_ref, ref = timed(lambda: medperf_reference([tree]), 1)  # also warms the page cache for everyone
    t_sum, _ = timed(lambda: sha256sum_all(tree), args.repeat)
    t_cold, ours = timed(lambda: folders_hash([tree], workers=args.workers), args.repeat)
    if ours != ref:
        print(f"MISMATCH: folders_hash {ours} != MedPerf's algorithm {ref}")
        return 1

    cache_path = root / "hash-cache.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cache_path}{suffix}").unlink(missing_ok=True)
    with HashCache(cache_path) as cache:
        t_fill, filled = timed(lambda: folders_hash([tree], cache=cache, workers=args.workers), 1)
    # a re-plan is a new process: it opens the cache file afresh
    def replan():
        with HashCache(cache_path) as cache:
            return folders_hash([tree], cache=cache, workers=args.workers)
    t_warm, warm = timed(replan, args.repeat)
    if not (filled == warm == ref):
        print(f"MISMATCH with the cache: {filled} / {warm} != {ref}")
        return 1

    size = sum(os.path.getsize(os.path.join(r, n)) for r, _d, ns in os.walk(tree) for n in ns)
    mib = size / 2**20
    print(f"tree: {mib:.0f} MiB in {args.files} files, {cpus} CPUs, digest {ref[:16]}... (equals MedPerf's algorithm); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"MedPerf's algorithm, plain (1 run) {t_ref:7.3f} s  {mib / t_ref:7.0f} MiB/s")
    print(f"sha256sum via xargs (median of {args.repeat})  {t_sum:7.3f} s  {mib / t_sum:7.0f} MiB/s")
    print(f"folders_hash, no cache            {t_cold:7.3f} s  {mib / t_cold:7.0f} MiB/s")
    print(f"folders_hash, filling the cache   {t_fill:7.3f} s")
    print(f"folders_hash, unchanged (cached)  {t_warm:7.3f} s")
    speedup = t_sum / t_cold
    replan_share = t_warm / t_cold
    ok = speedup >= 1.5 and replan_share < 0.05
    print(f"targets: >= 1.5x sha256sum, re-plan < 5% of a full hash: {'met' if ok else 'NOT met'}")
    print(f"hashing: {speedup:.2f}x sha256sum, re-plan {replan_share:.1%} of full hash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
