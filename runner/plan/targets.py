"""PURE: --target dataset/NAME[/benchmark/B] -> which datasets (and which of their benchmarks) a command covers."""

from __future__ import annotations

from collections.abc import Sequence

from runner.errors import UsageError
from runner.model import Manifest

Selection = dict[str, set[str] | None]  # dataset name -> its selected benchmarks, None = all


def select(manifest: Manifest, targets: Sequence[str]) -> Selection:
    """The datasets (and benchmarks) the targets name; every dataset when none is given; unmatched = usage error."""
    if not targets:
        return {d.name: None for d in manifest.datasets}
    out: Selection = {}
    for t in targets:
        parts = t.strip("/").split("/")
        if len(parts) not in (2, 4) or parts[0] != "dataset" or (len(parts) == 4 and parts[2] != "benchmark"):
            raise UsageError(f"--target {t!r}: expected dataset/NAME or dataset/NAME/benchmark/B")
        spec = manifest.dataset(parts[1])
        if spec is None:
            names = ", ".join(d.name for d in manifest.datasets)
            raise UsageError(f"--target {t!r} matches no dataset of the manifest", hint=f"datasets: {names}")
        bench = parts[3] if len(parts) == 4 else None
        if bench is not None and bench not in {str(b.benchmark) for b in spec.benchmarks}:
            raise UsageError(f"--target {t!r}: dataset {spec.name} lists no benchmark {bench}",
                             hint=f"its benchmarks: {', '.join(str(b.benchmark) for b in spec.benchmarks) or 'none'}")
        if bench is None or (spec.name in out and out[spec.name] is None):
            out[spec.name] = None  # the whole dataset
        else:
            out.setdefault(spec.name, set()).add(bench)
    return out
