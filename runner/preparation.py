"""The prepare step of apply: prepare, sanity_check and statistics of the data preparation container.

Called by apply.py (Applier._do) with the Applier; failures leave the dataset re-preparable and say which
task failed and where its log is.
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import ContainerError, Interrupted, MedperfApplyError, StateError
from runner.model import Step
from runner.plan import PREPARE_TASKS


def _report(app, ds_id: int, status: str) -> None:
    """MedPerf's preparation status report; failures to send it are only noted, as MedPerf does."""
    try:
        app.api.update(f"datasets/{ds_id}/", {"report": {"progress": {}, "execution_status": status}})
    except MedperfApplyError as e:
        if type(e).__name__ == "PrivacyViolation":
            raise
        app.warnings.append(f"dataset {ds_id}: could not send status {status}: {e}")


def prepare(app, step: Step) -> str:
    """Run prepare (unless ready), sanity_check and statistics with MedPerf's mounts; .ready when all passed."""
    from runner.apply import StepFailed, _read_statistics
    from runner.container_spec import ContainerSpec

    spec = app.manifest.dataset(step.dataset)
    ds_id = app._dataset_id(step)
    record = app.obs.containers.get(int(step.args["container"]))
    if record is None:
        raise StepFailed(f"container {step.args['container']} was not observed on the server")
    container = ContainerSpec.from_record(record.record)
    root = app.state.dataset_dir(ds_id)
    data, labels, metadata = root / "data", root / "labels", root / "metadata"
    ready, statistics, logs = root / ".ready", root / "statistics.yaml", root / "logs"
    with_metadata = container.declares("prepare", "metadata_path")
    with_report = container.declares("prepare", "report_file")
    try:
        for d in (data, labels, logs) + ((metadata,) if with_metadata else ()):
            d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateError(f"cannot create {e.filename}: {e.strerror}", where=str(root)) from e
    if not (root / "raw.yaml").exists():
        app._write_raw_yaml(ds_id, step)
    runner = app._container_runner()
    runner.check_image(container)
    tasks = [t for t in step.args.get("tasks", PREPARE_TASKS)]
    if ready.exists():
        tasks = [t for t in tasks if t != "prepare"]  # MedPerf: a ready dataset only re-checks
    ran: list[str] = []
    with app._journal(step, dataset_id=ds_id, tasks=tasks):
        for task in tasks:
            volumes: dict[str, Path] = {}
            if task == "prepare":
                volumes = {"data_path": spec.data_path, "labels_path": spec.labels_path,
                           "output_path": data, "output_labels_path": labels}
                if with_report:
                    volumes["report_file"] = root / "report.yaml"
            else:
                volumes = {"data_path": data, "labels_path": labels}
                if task == "statistics":
                    statistics.unlink(missing_ok=True)
                    volumes["output_path"] = statistics
            if with_metadata:
                volumes["metadata_path"] = metadata
            _run_task(app, step, ds_id, container, runner, task, volumes, logs / f"{task}.log",
                           report=(task == "prepare"))
            ran.append(task)
        stats = _read_statistics(statistics)
        if not stats:
            ready.unlink(missing_ok=True)
            raise StepFailed(f"dataset {spec.name}: the statistics task wrote no statistics "
                             f"({statistics} is empty); the dataset can be prepared again",
                             log_path=str(logs / "statistics.log"))
        from runner.state import write_atomic

        write_atomic(ready, b"")
    return f"dataset {ds_id}: {', '.join(ran)} done"


def _run_task(app, step: Step, ds_id: int, container, runner, task: str, volumes: dict, log_path: Path,
              *, report: bool) -> None:
    from runner.apply import StepFailed

    spec_name = step.dataset
    if report:
        _report(app, ds_id, "started")
    try:
        runner.run_task(container, task, volumes, log_path=log_path,
                        on_line=app.progress.task(f"{spec_name}: {task}"))
    except (Interrupted, KeyboardInterrupt):
        (app.state.dataset_dir(ds_id) / ".ready").unlink(missing_ok=True)
        if report:
            _report(app, ds_id, "interrupted")
        raise
    except MedperfApplyError as e:
        (app.state.dataset_dir(ds_id) / ".ready").unlink(missing_ok=True)
        if report:
            _report(app, ds_id, "failed")
        code = getattr(e, "container_exit_code", None)
        log = getattr(e, "log_path", None) or str(log_path)
        what = f"exited with code {code}" if code is not None else str(e)
        last = getattr(e, "last_lines", ())
        tail = ("; last lines: " + " | ".join(last[-3:])) if last and isinstance(e, ContainerError) else ""
        raise StepFailed(f"dataset {spec_name}: task {task} of {container.name} {what}{tail}; log: {log}; "
                         "the dataset stays re-preparable: fix the cause and apply again",
                         log_path=str(log)) from e
    if report:
        _report(app, ds_id, "finished")
