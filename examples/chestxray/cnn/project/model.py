"""A small convolutional network in numpy: conv 5x5 (8 filters) -> ReLU -> 2x2 average pool -> dense -> sigmoid.

Input: float images (N, 28, 28, 1) in [0, 1]. Output: (N, num_classes) sigmoid scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KERNEL = 5
FILTERS = 8
CENTER, SCALE = 0.35, 4.0  # roughly standardise pixel values in [0, 1]; training is steadier
WEIGHT_FILES = ("conv_w", "conv_b", "dense_w", "dense_b")


def _patches(x: np.ndarray) -> np.ndarray:
    x = (x.reshape(x.shape[0], x.shape[1], x.shape[2]) - CENTER) * SCALE
    win = np.lib.stride_tricks.sliding_window_view(x, (KERNEL, KERNEL), axis=(1, 2))  # N, H', W', k, k
    return win.reshape(-1, KERNEL * KERNEL), win.shape[1], win.shape[2]


def _forward(weights: dict, x: np.ndarray):
    n = x.shape[0]
    patches, h, w = _patches(x)
    conv = patches @ weights["conv_w"] + weights["conv_b"]  # N*h*w, F
    act = np.maximum(conv, 0.0).reshape(n, h, w, FILTERS)
    pooled = act.reshape(n, h // 2, 2, w // 2, 2, FILTERS).mean(axis=(2, 4))
    flat = pooled.reshape(n, -1)
    logits = flat @ weights["dense_w"] + weights["dense_b"]
    return 1.0 / (1.0 + np.exp(-logits)), (patches, conv, flat, h, w)


def predict(weights: dict, x: np.ndarray) -> np.ndarray:
    """Return the sigmoid scores for a batch of images."""
    return _forward(weights, x.astype(np.float32))[0]


def train(x: np.ndarray, y: np.ndarray, *, seed: int = 0, steps: int = 150, lr: float = 0.01) -> dict:
    """Fit the network with full-batch Adam on binary cross-entropy per label."""
    rng = np.random.default_rng(seed)
    n, classes = y.shape
    h = w = x.shape[1] - KERNEL + 1
    weights = {
        "conv_w": rng.normal(0, 0.1, (KERNEL * KERNEL, FILTERS)).astype(np.float32),
        "conv_b": np.zeros(FILTERS, np.float32),
        "dense_w": rng.normal(0, 0.05, ((h // 2) * (w // 2) * FILTERS, classes)).astype(np.float32),
        "dense_b": np.zeros(classes, np.float32),
    }
    m = {k: np.zeros_like(v) for k, v in weights.items()}
    v = {k: np.zeros_like(v) for k, v in weights.items()}
    x = x.astype(np.float32)
    for step in range(1, steps + 1):
        scores, (patches, conv, flat, h, w) = _forward(weights, x)
        g = (scores - y) / n  # dLoss/dlogits for mean BCE
        grads = {"dense_w": flat.T @ g, "dense_b": g.sum(axis=0)}
        dpooled = (g @ weights["dense_w"].T).reshape(n, h // 2, w // 2, FILTERS)
        dact = np.repeat(np.repeat(dpooled, 2, axis=1), 2, axis=2) / 4.0
        dconv = dact.reshape(-1, FILTERS) * (conv > 0)
        grads["conv_w"] = patches.T @ dconv
        grads["conv_b"] = dconv.sum(axis=0)
        for k in weights:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            mhat, vhat = m[k] / (1 - 0.9 ** step), v[k] / (1 - 0.999 ** step)
            weights[k] = (weights[k] - lr * mhat / (np.sqrt(vhat) + 1e-8)).astype(np.float32)
        if step % 25 == 0:
            loss = -np.mean(y * np.log(scores + 1e-7) + (1 - y) * np.log(1 - scores + 1e-7))
            print(f"cnn step {step}/{steps} loss {loss:.4f}", flush=True)
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
