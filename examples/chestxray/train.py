"""Train both example models on toy data; run by build.py inside the base image (which has numpy and Pillow).

    python3 train.py --src /src --data /data --out /out
reads /data/images + /data/labels/labels.csv through the prep container's own code (same preprocessing),
writes /out/cnn/*.npy and /out/linear/*.npy.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="examples/chestxray")
    parser.add_argument("--data", type=Path, required=True, help="toy data (images/, labels/labels.csv)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    prep = _module("prep", args.src / "prep/project/prep.py")
    params = prep.load_parameters(args.src / "prep/parameters.yaml")
    rows = prep.read_labels_csv(args.data / "labels", params)
    known = [str(x).lower() for x in params["labels_list"]]
    x = np.stack([prep.load_image(args.data / "images" / f"{i}.png", params["image_output_size"]) for i, _ in rows])
    y = np.zeros((len(rows), len(known)), np.float32)
    y[np.arange(len(rows)), [known.index(label) for _, label in rows]] = 1.0
    print(f"training on {len(rows)} cases", flush=True)
    for name in ("cnn", "linear"):
        model = _module(f"{name}_model", args.src / name / "project/model.py")
        weights = model.train(x, y, seed=args.seed)
        hits = (model.predict(weights, x).argmax(axis=1) == y.argmax(axis=1)).mean()
        print(f"{name}: training top-1 accuracy {hits:.3f}", flush=True)
        model.save(weights, args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
