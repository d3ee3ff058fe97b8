"""Chest X-ray data preparation: prepare, sanity_check and statistics, as MedPerf's tutorial defines them.

    prepare       images/<Image ID>.png + labels.csv -> data/<id>.npy (float32, image_output_size)
                  and labels/<id>.npy (one-hot over labels_list)
    sanity_check  every data file is .npy, data and label names match, label vectors have len(labels_list)
    statistics    statistics.yaml = {num_cases, labels_count: {label: count}}

Errors are printed as one line starting with "ERROR:" and exit with status 1.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image


class PrepError(Exception):
    """Bad input: the message says what and where."""


def load_parameters(path: Path) -> dict:
    params = yaml.safe_load(Path(path).read_text()) or {}
    for key in ("labels_list", "image_column_id", "label_column_id", "image_output_size"):
        if key not in params:
            raise PrepError(f"parameters file {path} has no {key}")
    return params


def read_labels_csv(labels_dir: Path, params: dict) -> list[tuple[str, str]]:
    """Return (image id, label) rows of labels_dir/labels.csv, checking the columns and label names."""
    path = Path(labels_dir) / "labels.csv"
    if not path.is_file():
        raise PrepError(f"labels file not found: {path.name} in the labels folder")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for key in ("image_column_id", "label_column_id"):
            if params[key] not in columns:
                raise PrepError(f"{path.name} has no column {params[key]!r} (columns: {', '.join(columns) or 'none'})")
        known = [str(x).lower() for x in params["labels_list"]]
        rows = []
        for line, row in enumerate(reader, start=2):
            image_id = (row[params["image_column_id"]] or "").strip()
            label = (row[params["label_column_id"]] or "").strip().lower()
            if not image_id:
                raise PrepError(f"{path.name} line {line}: empty {params['image_column_id']!r}")
            if label not in known:
                raise PrepError(f"{path.name} line {line}: label {label!r} is not one of labels_list")
            rows.append((image_id, label))
    if not rows:
        raise PrepError(f"{path.name} has no cases")
    return rows


def load_image(path: Path, size) -> np.ndarray:
    """Read a PNG as grayscale floats in [0, 1], resized to size[0] x size[1], with a channel axis."""
    height, width = int(size[0]), int(size[1])
    with Image.open(path) as img:
        img = img.convert("L").resize((width, height), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr.reshape(height, width, *[int(s) for s in size[2:]])


def prepare(data_path: Path, labels_path: Path, params: dict, output_path: Path, output_labels_path: Path) -> int:
    rows = read_labels_csv(labels_path, params)
    known = [str(x).lower() for x in params["labels_list"]]
    missing = [i for i, _ in rows if not (Path(data_path) / f"{i}.png").is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise PrepError(f"image {missing[0]}.png listed in labels.csv is missing from the data folder{more}")
    Path(output_path).mkdir(parents=True, exist_ok=True)
    Path(output_labels_path).mkdir(parents=True, exist_ok=True)
    for n, (image_id, label) in enumerate(rows, start=1):
        np.save(Path(output_path) / f"{image_id}.npy", load_image(Path(data_path) / f"{image_id}.png",
                                                                   params["image_output_size"]))
        onehot = np.zeros(len(known), dtype=np.float32)
        onehot[known.index(label)] = 1.0
        np.save(Path(output_labels_path) / f"{image_id}.npy", onehot)
        if n % 25 == 0 or n == len(rows):
            print(f"prepared {n}/{len(rows)}", flush=True)
    return len(rows)


def sanity_check(data_path: Path, labels_path: Path, params: dict) -> None:
    data = sorted(p.name for p in Path(data_path).iterdir())
    labels = sorted(p.name for p in Path(labels_path).iterdir())
    if not data:
        raise PrepError("the prepared data folder is empty")
    bad = [n for n in data if not n.endswith(".npy")]
    if bad:
        raise PrepError(f"data file {bad[0]} is not a .npy file")
    if data != labels:
        only = sorted(set(data) ^ set(labels))
        raise PrepError(f"data and labels do not match: {only[0]} is only in one of them ({len(only)} differ)")
    for name in labels:
        vec = np.load(Path(labels_path) / name)
        if vec.shape != (len(params["labels_list"]),):
            raise PrepError(f"label {name} has shape {vec.shape}, expected ({len(params['labels_list'])},)")
    print(f"sanity check passed: {len(data)} cases", flush=True)


def statistics(data_path: Path, labels_path: Path, params: dict, output_path: Path) -> dict:
    names = sorted(p.name for p in Path(labels_path).iterdir() if p.name.endswith(".npy"))
    counts = np.zeros(len(params["labels_list"]), dtype=np.int64)
    for name in names:
        counts += np.load(Path(labels_path) / name).astype(np.int64)
    stats = {"num_cases": len(names),
             "labels_count": {str(label): int(c) for label, c in zip(params["labels_list"], counts, strict=True)}}
    Path(output_path).write_text(yaml.safe_dump(stats, sort_keys=False))
    print(f"statistics written: {len(names)} cases", flush=True)
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="chest X-ray data preparation")
    sub = parser.add_subparsers(dest="task", required=True)
    for task in ("prepare", "sanity_check", "statistics"):
        p = sub.add_parser(task)
        p.add_argument("--data_path", type=Path, required=True)
        p.add_argument("--labels_path", type=Path, required=True)
        p.add_argument("--parameters_file", type=Path, required=True)
        if task == "prepare":
            p.add_argument("--output_path", type=Path, required=True)
            p.add_argument("--output_labels_path", type=Path, required=True)
        if task == "statistics":
            p.add_argument("--output_path", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        params = load_parameters(args.parameters_file)
        if args.task == "prepare":
            prepare(args.data_path, args.labels_path, params, args.output_path, args.output_labels_path)
        elif args.task == "sanity_check":
            sanity_check(args.data_path, args.labels_path, params)
        else:
            statistics(args.data_path, args.labels_path, params, args.output_path)
    except PrepError as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
