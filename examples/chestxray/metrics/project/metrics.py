"""Chest X-ray evaluator: predictions.json + labels/<id>.npy -> results.yaml with Accuracy and AUC.

    Accuracy  mean over the labels of the per-label accuracy, a score >= threshold counting as positive
    AUC       sum of the per-label ROC-AUC divided by the number of labels; a label whose AUC is
              undefined (only one class among the cases) contributes 0

Per-label figures are written to local_outputs_path/per_label.yaml, which never leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml


class EvalError(Exception):
    """Bad input: the message says what and where."""


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC as the Mann-Whitney statistic with tied scores sharing their mean rank; None if undefined."""
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[truth == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def evaluate(predictions: dict, labels: dict, threshold: float) -> tuple[dict, dict]:
    """Return (results, per-label details) for predictions and one-hot labels keyed by case id."""
    ids = sorted(labels)
    missing = [i for i in ids if i not in predictions]
    if missing:
        raise EvalError(f"no prediction for case {missing[0]} ({len(missing)} cases missing)")
    truth = np.stack([labels[i] for i in ids]).astype(np.int64)
    scores = np.asarray([predictions[i] for i in ids], dtype=np.float64)
    if scores.shape != truth.shape:
        raise EvalError(f"predictions have shape {scores.shape}, labels {truth.shape}")
    classes = truth.shape[1]
    accuracies = ((scores >= threshold).astype(np.int64) == truth).mean(axis=0)
    aucs = [roc_auc(truth[:, k], scores[:, k]) for k in range(classes)]
    results = {"Accuracy": float(accuracies.mean()), "AUC": float(sum(a or 0.0 for a in aucs) / classes)}
    details = {"cases": len(ids), "per_label": [{"accuracy": float(acc), "auc": auc}
                                                 for acc, auc in zip(accuracies, aucs, strict=True)]}
    return results, details


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="chest X-ray metrics")
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--parameters_file", type=Path, required=True)
    parser.add_argument("--output_path", type=Path, required=True)
    parser.add_argument("--local_outputs_path", type=Path)
    args = parser.parse_args(argv)
    try:
        params = yaml.safe_load(args.parameters_file.read_text()) or {}
        pred_file = args.predictions / "predictions.json"
        if not pred_file.is_file():
            raise EvalError("predictions.json not found in the predictions folder")
        predictions = json.loads(pred_file.read_text())
        labels = {p.stem: np.load(p) for p in sorted(args.labels.glob("*.npy"))}
        if not labels:
            raise EvalError("no .npy labels in the labels folder")
        results, details = evaluate(predictions, labels, float(params.get("threshold", 0.5)))
    except (EvalError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    args.output_path.write_text(yaml.safe_dump(results, sort_keys=False))
    if args.local_outputs_path is not None:
        args.local_outputs_path.mkdir(parents=True, exist_ok=True)
        (args.local_outputs_path / "per_label.yaml").write_text(yaml.safe_dump(details, sort_keys=False))
    print(f"Accuracy {results['Accuracy']:.4f} AUC {results['AUC']:.4f} over {details['cases']} cases", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
