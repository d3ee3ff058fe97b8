"""Run one model of a benchmark on a prepared dataset, as MedPerf's execution flow does it.

The result record exists on the server before anything runs (POST results/, or an existing one reused);
status reports (execution_status only) follow infer and evaluate; predictions, logs, local outputs and the
metrics stay in the state dir: results/<id>/{results.yaml, result-info.yaml, predictions/, logs/,
local_outputs/, .partial, .executed}. Called by apply.py only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import ContainerError, Interrupted, MedperfApplyError, PrivacyViolation, ServerWriteUncertain
from runner.observe import find_result

# POST results/ (MedPerf's Execution schema, without the read-only and null keys)
RESULT_RECORD_FIELDS = ("name", "benchmark", "model", "dataset", "results", "metadata", "user_metadata",
                        "model_report", "evaluation_report")


class RunFailed(MedperfApplyError):
    """A model's run failed; its result record stays, not executed, and is reused by the next run."""

    def __init__(self, message: str, *, log_path: str | None = None, partial: bool = False, **kw):
        super().__init__(message, **kw)
        self.log_path = log_path
        self.partial = partial


@dataclass(frozen=True)
class Computed:
    """A finished run: the metrics and whether they are partial (infer failed, ignore_model_errors)."""

    result_id: int
    metrics: Mapping[str, Any]
    partial: bool
    from_cache: bool = False


def result_body(name: str, benchmark: int, model: int, dataset: int) -> dict[str, Any]:
    values = {"name": name, "benchmark": benchmark, "model": model, "dataset": dataset, "results": {},
              "metadata": {}, "user_metadata": {}, "model_report": {}, "evaluation_report": {}}
    return {k: values[k] for k in RESULT_RECORD_FIELDS}


def create_record(api, *, name: str, benchmark: int, model: int, dataset: int) -> int:
    """POST results/ for (B, M, D); an uncertain POST is resolved by looking before sending it again."""
    body = result_body(name, benchmark, model, dataset)
    try:
        return int(api.create("results/", body)["id"])
    except ServerWriteUncertain:
        found = find_result(api, benchmark, model, dataset)
        if found is not None and not found.finalized:
            return found.id
        return int(api.create("results/", body)["id"])


def cached(state, result_id: int) -> Computed | None:
    """The local outcome of an earlier run of this record (.executed), or None."""
    from runner.state import read_yaml

    root = state.result_dir(result_id)
    if not (root / ".executed").exists():
        return None
    metrics = read_yaml(root / "results.yaml")
    if not isinstance(metrics, dict) or not metrics:
        return None
    return Computed(result_id, metrics, (root / ".partial").exists(), from_cache=True)


@dataclass
class ModelExecution:
    """Runs infer and evaluate for one result record, with MedPerf's status reports."""

    api: Any
    state: Any
    runner: Any  # ContainerRunner
    warn: Callable[[str], None]
    on_line: Callable[[str], Callable[[str], None] | None] = lambda name: None

    def report(self, result_id: int, which: str, status: str) -> None:
        """PUT a status report; failures to send it are only noted (MedPerf logs them and goes on)."""
        try:
            self.api.update(f"results/{result_id}/", {which: {"execution_status": status}})
        except PrivacyViolation:
            raise
        except MedperfApplyError as e:
            self.warn(f"result {result_id}: could not send {which} {status}: {e}")

    def run(self, *, result_id: int, dataset_id: int, model, evaluator, ignore_model_errors: bool,
            label: str, info: Mapping[str, Any] | None = None) -> Computed:
        """Run `model` (a ContainerSpec with infer) then `evaluator` (with evaluate); keep everything locally."""
        from runner.state import read_yaml, write_atomic, write_yaml_atomic

        ds = self.state.dataset_dir(dataset_id)
        if not (ds / ".ready").exists() or not (ds / "data").is_dir() or not (ds / "labels").is_dir():
            raise RunFailed(f"dataset {dataset_id} has no prepared copy in the state dir ({ds}): models run on the "
                            "prepared data", hint="prepare it here (a state dir of the machine that prepared it)")
        root = self.state.result_dir(result_id)
        predictions, logs, local_outputs = root / "predictions", root / "logs", root / "local_outputs"
        for flag in (".executed", ".partial"):
            (root / flag).unlink(missing_ok=True)
        shutil.rmtree(predictions, ignore_errors=True)  # a fresh predictions folder for every run
        for d in (predictions, logs, local_outputs):
            d.mkdir(parents=True, exist_ok=True)
        model_log, eval_log = logs / "model.log", logs / f"metrics_{evaluator.name}.log"
        output = root / "results.new.yaml"
        output.unlink(missing_ok=True)

        self.report(result_id, "model_report", "pending")
        self.report(result_id, "evaluation_report", "pending")
        partial = False
        self.report(result_id, "model_report", "started")
        try:
            self.runner.run_task(model, "infer", {"data_path": ds / "data", "output_path": predictions},
                                 log_path=model_log, on_line=self.on_line(f"{label}: infer"))
        except (Interrupted, KeyboardInterrupt):
            self.report(result_id, "model_report", "interrupted")
            raise
        except MedperfApplyError as e:
            self.report(result_id, "model_report", "failed")
            if not ignore_model_errors:
                raise RunFailed(f"model execution failed: infer of {model.name} {_what(e)}; log: "
                                f"{getattr(e, 'log_path', None) or model_log}", log_path=str(model_log)) from e
            partial = True  # MedPerf --ignore-model-errors: evaluate whatever predictions exist
            self.warn(f"{label}: infer of {model.name} {_what(e)}; evaluating what it predicted (partial result)")
        else:
            self.report(result_id, "model_report", "finished")

        self.report(result_id, "evaluation_report", "started")
        try:
            self.runner.run_task(evaluator, "evaluate", {"predictions": predictions, "labels": ds / "labels",
                                                         "output_path": output, "local_outputs_path": local_outputs},
                                 log_path=eval_log, on_line=self.on_line(f"{label}: evaluate"))
            metrics = read_yaml(output)
            if not isinstance(metrics, dict) or not metrics:
                raise RunFailed(f"evaluate of {evaluator.name} wrote no results ({output} is empty)",
                                log_path=str(eval_log))
        except (Interrupted, KeyboardInterrupt):
            self.report(result_id, "evaluation_report", "interrupted")
            raise
        except RunFailed as e:
            self.report(result_id, "evaluation_report", "failed")
            e.partial = partial
            raise
        except MedperfApplyError as e:
            self.report(result_id, "evaluation_report", "failed")
            raise RunFailed(f"evaluation failed: evaluate of {evaluator.name} {_what(e)}; log: "
                            f"{getattr(e, 'log_path', None) or eval_log}", log_path=str(eval_log),
                            partial=partial) from e
        self.report(result_id, "evaluation_report", "finished")
        write_yaml_atomic(root / "results.yaml", metrics)
        output.unlink(missing_ok=True)
        if partial:
            write_atomic(root / ".partial", b"")
        write_yaml_atomic(root / "result-info.yaml", {"id": result_id, **dict(info or {}), "partial": partial})
        write_atomic(root / ".executed", b"")  # last: the run counts only once everything is written
        return Computed(result_id, metrics, partial)


def _what(e: Exception) -> str:
    code = getattr(e, "container_exit_code", None)
    if code is not None:
        last = getattr(e, "last_lines", ())
        tail = ("; last lines: " + " | ".join(last[-3:])) if last and isinstance(e, ContainerError) else ""
        return f"exited with code {code}{tail}"
    return f"failed: {e}"


def read_info(path: Path) -> dict:
    from runner.state import read_yaml

    data = read_yaml(path, {})
    return data if isinstance(data, dict) else {}
