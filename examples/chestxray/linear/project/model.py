"""Logistic regression in numpy: flattened pixels -> one sigmoid per label.

Input: float images (N, 28, 28, 1) in [0, 1]. Output: (N, num_classes) sigmoid scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHT_FILES = ("w", "b", "mean")


def predict(weights: dict, x: np.ndarray) -> np.ndarray:
    """Return the sigmoid scores for a batch of images."""
    flat = x.reshape(x.shape[0], -1).astype(np.float32) - weights["mean"]
    return 1.0 / (1.0 + np.exp(-(flat @ weights["w"] + weights["b"])))


def train(x: np.ndarray, y: np.ndarray, *, seed: int = 0, steps: int = 200, lr: float = 0.01,
          l2: float = 1e-3) -> dict:
    """Fit with full-batch Adam on binary cross-entropy per label, with a small L2 penalty."""
    rng = np.random.default_rng(seed)
    n, classes = y.shape
    flat = x.reshape(n, -1).astype(np.float32)
    mean = flat.mean(axis=0)
    flat = flat - mean
    weights = {"w": rng.normal(0, 0.01, (flat.shape[1], classes)).astype(np.float32),
               "b": np.zeros(classes, np.float32)}
    m = {k: np.zeros_like(v) for k, v in weights.items()}
    v = {k: np.zeros_like(v) for k, v in weights.items()}
    for step in range(1, steps + 1):
        scores = 1.0 / (1.0 + np.exp(-(flat @ weights["w"] + weights["b"])))
        g = (scores - y) / n
        grads = {"w": flat.T @ g + l2 * weights["w"], "b": g.sum(axis=0)}
        for k in weights:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            mhat, vhat = m[k] / (1 - 0.9 ** step), v[k] / (1 - 0.999 ** step)
            weights[k] = (weights[k] - lr * mhat / (np.sqrt(vhat) + 1e-8)).astype(np.float32)
        if step % 50 == 0:
            loss = -np.mean(y * np.log(scores + 1e-7) + (1 - y) * np.log(1 - scores + 1e-7))
            print(f"linear step {step}/{steps} loss {loss:.4f}", flush=True)
    weights["mean"] = mean.astype(np.float32)
    return weights


def save(weights: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in WEIGHT_FILES:
        np.save(folder / f"{k}.npy", weights[k])


def load(folder: Path) -> dict:
    missing = [k for k in WEIGHT_FILES if not (folder / f"{k}.npy").is_file()]
    if missing:
        raise FileNotFoundError(f"weights file {missing[0]}.npy not found in {folder}")
    return {k: np.load(folder / f"{k}.npy") for k in WEIGHT_FILES}
