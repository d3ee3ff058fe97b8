"""Run one model of a benchmark on a prepared dataset, as MedPerf's execution flow does it.

The result record exists on the server before anything runs (POST results/, or an existing one reused);
status reports (execution_status only) follow infer and evaluate; predictions, logs, local outputs and the
metrics stay in the state dir (runner/state.py's ResultDir).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.clients import Api, ContainerRunner
from runner.container_spec import ContainerSpec
from runner.errors import (
    ContainerError,
    Interrupted,
    MedperfApplyError,
    PrivacyViolation,
    RunFailed,
    ServerWriteUncertain,
)
from runner.journal import read_yaml, write_atomic, write_yaml_atomic
from runner.observe import find_result
from runner.privacy import RESULT_RECORD_FIELDS
from runner.state import DatasetDir, ResultDir, StateDir


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


def create_record(api: Api, *, name: str, benchmark: int, model: int, dataset: int) -> int:
    """POST results/ for (B, M, D); an uncertain POST is resolved by looking before sending it again."""
    body = result_body(name, benchmark, model, dataset)
    try:
        return int(api.create("results/", body)["id"])
    except ServerWriteUncertain:
        found = find_result(api, benchmark, model, dataset)
        if found is not None and not found.finalized:
            return found.id
        return int(api.create("results/", body)["id"])


def cached(state: StateDir, result_id: int) -> Computed | None:
    """The local outcome of an earlier run of this record (.executed), or None."""
    result = state.result(result_id)
    metrics = result.read_metrics()
    if metrics is None:
        return None
    return Computed(result_id, metrics, result.is_partial(), from_cache=True)


@dataclass
class ModelExecution:
    """Runs infer and evaluate for one result record, with MedPerf's status reports."""

    api: Api
    state: StateDir
    runner: ContainerRunner
    warn: Callable[[str], None]
    on_line: Callable[[str], Callable[[str], None] | None] = lambda name: None
    on_download: Callable[[str], Callable[[int, int], None] | None] = lambda name: None  # a pull's bytes
    on_end: Callable[[str], None] = lambda name: None  # the task or pull of that name is over (its bar goes)
    interrupted: Callable[[], bool] = lambda: False  # a task that fails after an interrupt was stopped by it

    def report(self, result_id: int, which: str, status: str) -> None:
        """PUT a status report; failures to send it are only noted (MedPerf logs them and goes on)."""
        try:
            self.api.update(f"results/{result_id}/", {which: {"execution_status": status}})
        except PrivacyViolation:
            raise
        except MedperfApplyError as e:
            self.warn(f"result {result_id}: could not send {which} {status}: {e}")

    def run(self, *, result_id: int, dataset_id: int, model: ContainerSpec, evaluator: ContainerSpec,
            ignore_model_errors: bool, label: str, info: Mapping[str, Any] | None = None) -> Computed:
        """Run `model` (a ContainerSpec with infer) then `evaluator` (with evaluate); keep everything locally."""
        ds = self.state.dataset(dataset_id)
        if not ds.has_copy():
            raise RunFailed(f"dataset {dataset_id} has no prepared copy in the state dir ({ds.root}): models run on "
                            "the prepared data", hint="prepare it here (a state dir of the machine that prepared it)")
        result = self.state.result(result_id)
        # A task a dead run left (a Slurm job still running, or finished well and never seen through) is adopted
        # with its outputs, never run twice: an evaluate of it means its infer had ended and the predictions are
        # complete (and .partial says how that infer ended); an infer of it writes the predictions folder.
        adopt_evaluate = self.runner.adopts(evaluator, "evaluate", self._evaluate_volumes(ds, result),
                                            log_path=result.logs / f"metrics_{evaluator.name}.log")
        adopt_infer = not adopt_evaluate and self.runner.adopts(model, "infer", self._infer_volumes(ds, result),
                                                                log_path=result.logs / "model.log")
        result.executed.unlink(missing_ok=True)
        if not adopt_evaluate:
            result.partial.unlink(missing_ok=True)
            result.results_new.unlink(missing_ok=True)
            if not adopt_infer:
                shutil.rmtree(result.predictions, ignore_errors=True)  # a fresh predictions folder for every run
        for d in (result.predictions, result.logs, result.local_outputs):
            d.mkdir(parents=True, exist_ok=True)
        # Both images are here and are the registered ones (pulled or loaded if needed) before anything is sent
        # or run, as MedPerf fetches a container's run files first.
        for spec in (model, evaluator):
            image = f"{label}: image of {spec.name}"
            try:
                self.runner.check_image(spec, on_progress=self.on_download(image))
            finally:
                self.on_end(image)

        self.report(result_id, "model_report", "pending")
        self.report(result_id, "evaluation_report", "pending")
        if adopt_evaluate:
            partial = result.partial.exists()
        else:
            partial = not self._infer(result_id, model, ds, result, ignore_model_errors=ignore_model_errors,
                                      label=label)
        metrics = self._evaluate(result_id, evaluator, ds, result, partial=partial, label=label)
        write_yaml_atomic(result.results, metrics)
        result.results_new.unlink(missing_ok=True)
        if partial:
            write_atomic(result.partial, b"")
        write_yaml_atomic(result.info, {"id": result_id, **dict(info or {}), "partial": partial})
        write_atomic(result.executed, b"")  # last: the run counts only once everything is written
        return Computed(result_id, metrics, partial)

    def _run_task(self, spec: ContainerSpec, task: str, volumes: Mapping[str, Path], *, log: Path, name: str) -> None:
        try:
            self.runner.run_task(spec, task, volumes, log_path=log, on_line=self.on_line(name))
        finally:
            self.on_end(name)

    def _infer(self, result_id: int, model: ContainerSpec, ds: DatasetDir, result: ResultDir, *,
               ignore_model_errors: bool, label: str) -> bool:
        """Run infer; True when it finished, False when it failed and MedPerf's --ignore-model-errors goes on."""
        log = result.logs / "model.log"
        self.report(result_id, "model_report", "started")
        try:
            self._run_task(model, "infer", self._infer_volumes(ds, result), log=log, name=f"{label}: infer")
        except (Interrupted, KeyboardInterrupt):
            self.report(result_id, "model_report", "interrupted")
            raise
        except MedperfApplyError as e:
            self._stopped(result_id, "model_report", model, "infer", e)
            self.report(result_id, "model_report", "failed")
            if not ignore_model_errors:
                raise RunFailed(f"model execution failed: infer of {model.name} {_what(e)}; log: "
                                f"{e.log_path or log}", log_path=str(log)) from e
            # evaluate whatever predictions exist: a partial result (said now: an evaluate adopted after a crash
            # reads it)
            write_atomic(result.partial, b"")
            self.warn(f"{label}: infer of {model.name} {_what(e)}; evaluating what it predicted (partial result)")
            return False
        self.report(result_id, "model_report", "finished")
        return True

    def _evaluate(self, result_id: int, evaluator: ContainerSpec, ds: DatasetDir, result: ResultDir, *,
                  partial: bool, label: str) -> dict:
        """Run evaluate on the predictions; return the metrics it wrote."""
        log, output = result.logs / f"metrics_{evaluator.name}.log", result.results_new
        self.report(result_id, "evaluation_report", "started")
        try:
            self._run_task(evaluator, "evaluate", self._evaluate_volumes(ds, result), log=log,
                           name=f"{label}: evaluate")
            metrics = read_yaml(output)
            if not isinstance(metrics, dict) or not metrics:
                raise RunFailed(f"evaluate of {evaluator.name} wrote no results ({output} is empty)", log_path=str(log))
        except (Interrupted, KeyboardInterrupt):
            self.report(result_id, "evaluation_report", "interrupted")
            raise
        except RunFailed as e:
            self._stopped(result_id, "evaluation_report", evaluator, "evaluate", e)
            self.report(result_id, "evaluation_report", "failed")
            e.partial = partial
            raise
        except MedperfApplyError as e:
            self._stopped(result_id, "evaluation_report", evaluator, "evaluate", e)
            self.report(result_id, "evaluation_report", "failed")
            raise RunFailed(f"evaluation failed: evaluate of {evaluator.name} {_what(e)}; log: "
                            f"{e.log_path or log}", log_path=str(log), partial=partial) from e
        self.report(result_id, "evaluation_report", "finished")
        return metrics

    @staticmethod
    def _infer_volumes(ds: DatasetDir, result: ResultDir) -> dict:
        return {"data_path": ds.data, "output_path": result.predictions}

    @staticmethod
    def _evaluate_volumes(ds: DatasetDir, result: ResultDir) -> dict:
        return {"predictions": result.predictions, "labels": ds.labels, "output_path": result.results_new,
                "local_outputs_path": result.local_outputs}

    def _stopped(self, result_id: int, which: str, spec: ContainerSpec, task: str, e: Exception) -> None:
        """A task that failed because the run was interrupted (its container stopped) is interrupted, not failed."""
        if self.interrupted():
            self.report(result_id, which, "interrupted")
            raise Interrupted(f"{task} of {spec.name} stopped: the run was interrupted") from e


def _what(e: MedperfApplyError) -> str:
    return e.explain() if isinstance(e, ContainerError) else f"failed: {e}"
