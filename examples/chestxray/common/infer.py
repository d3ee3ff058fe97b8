"""Model inference for the chest X-ray example: data/<id>.npy -> predictions.json {id: [num_classes scores]}.

The model code (`model.py`, next to this file in the image) provides load(folder) and predict(weights, x);
its weights come from the container's additional files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

import model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="chest X-ray model inference")
    parser.add_argument("task", nargs="?", default="infer", choices=["infer"])
    parser.add_argument("--data_path", type=Path, required=True)
    parser.add_argument("--output_path", type=Path, required=True, help="predictions folder")
    parser.add_argument("--parameters_file", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help="folder holding the weights (additional files)")
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.parameters_file.read_text()) or {}
    num_classes = int(params.get("num_classes", 14))
    batch_size = max(1, int(params.get("batch_size", 5)))
    try:
        weights = model.load(args.weights)
    except FileNotFoundError as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    files = sorted(args.data_path.glob("*.npy"))
    if not files:
        print(f"ERROR: no .npy cases in {args.data_path}", file=sys.stderr, flush=True)
        return 1
    predictions = {}
    for start in range(0, len(files), batch_size):
        batch = files[start:start + batch_size]
        scores = model.predict(weights, np.stack([np.load(f) for f in batch]))
        if scores.shape[1] != num_classes:
            print(f"ERROR: the weights give {scores.shape[1]} scores, parameters say num_classes {num_classes}",
                  file=sys.stderr, flush=True)
            return 1
        for f, s in zip(batch, scores, strict=True):
            predictions[f.stem] = [round(float(v), 6) for v in s]
        print(f"inferred {min(start + batch_size, len(files))}/{len(files)}", flush=True)
    args.output_path.mkdir(parents=True, exist_ok=True)
    (args.output_path / "predictions.json").write_text(json.dumps(predictions, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
