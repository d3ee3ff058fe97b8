#!/usr/bin/env python3
"""Generate deterministic toy chest X-ray data in the MedPerf tutorial's layout.

    DIR/images/<Image ID>.png     64x64 grayscale
    DIR/labels/labels.csv         columns "Image ID","Label" (one of the tutorial's 14 labels)

Each label has its own spot on the image (a 4x4 grid of cells, one cell per label) where a bright
blob of random size, strength and offset sits on a noisy background, with a fainter blob in another
cell as a distractor, so a model can learn it but not perfectly. Standard library only (no numpy, no Pillow): the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import struct
import sys
import zlib
from pathlib import Path

LABELS = ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
          "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia")
SIZE = 64
CELL = SIZE // 4


def png_gray8(width: int, height: int, pixels: bytes) -> bytes:
    """Encode 8-bit grayscale pixels (row-major) as a PNG file."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def make_image(rng: random.Random, label_index: int) -> bytes:
    """Return the pixels of one case: noise, a soft vertical gradient, the label's blob and a distractor."""
    base = rng.uniform(50, 90)
    img = [base + 30 * (y / SIZE) + rng.gauss(0, 22) for y in range(SIZE) for _ in range(SIZE)]
    distractor = rng.choice([k for k in range(16) if k != label_index])  # a fainter blob elsewhere
    for cell, strength in ((label_index, rng.uniform(30, 80)), (distractor, rng.uniform(0, 45))):
        _blob(img, rng, cell, strength)
    return bytes(min(255, max(0, int(round(v)))) for v in img)


def _blob(img: list[float], rng: random.Random, cell: int, strength: float) -> None:
    row, col = divmod(cell, 4)
    cy = row * CELL + CELL / 2 + rng.uniform(-3, 3)
    cx = col * CELL + CELL / 2 + rng.uniform(-3, 3)
    radius = rng.uniform(3.0, 5.5)
    for y in range(max(0, int(cy - 3 * radius)), min(SIZE, int(cy + 3 * radius) + 1)):
        for x in range(max(0, int(cx - 3 * radius)), min(SIZE, int(cx + 3 * radius) + 1)):
            img[y * SIZE + x] += strength * math.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius ** 2))


def generate(out: Path, cases: int, seed: int) -> list[tuple[str, str]]:
    """Write the images and labels.csv under `out`; return the (Image ID, Label) rows."""
    rng = random.Random(seed)
    labels = [LABELS[i % len(LABELS)] for i in range(cases)]  # every label present once cases >= 14
    rng.shuffle(labels)
    images, label_dir = out / "images", out / "labels"
    images.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for stale in images.glob("*.png"):
        stale.unlink()
    rows = []
    for i, label in enumerate(labels):
        image_id = f"{i:08d}_000"
        (images / f"{image_id}.png").write_bytes(png_gray8(SIZE, SIZE, make_image(rng, LABELS.index(label))))
        rows.append((image_id, label))
    with open(label_dir / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["Image ID", "Label"])
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write images/ and labels/ into")
    parser.add_argument("--cases", type=int, default=100, help="number of cases (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    rows = generate(args.out, args.cases, args.seed)
    print(f"wrote {len(rows)} cases to {args.out}/images and {args.out}/labels/labels.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
