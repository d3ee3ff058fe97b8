"""The dataset's steps: register (POST datasets/), prepare (the preparation container's tasks, locally), set
operational (PUT datasets/{id}/ with the prepared data's hash and statistics). Failures leave the dataset
re-preparable and say which task failed and where its log is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runner.apply.context import RunContext
from runner.container_spec import ContainerSpec
from runner.errors import (
    ContainerError,
    Interrupted,
    MedperfApplyError,
    PrivacyViolation,
    ServerWriteUncertain,
    StateError,
    StepFailed,
)
from runner.model import SERVER_OPERATION, PrepareArgs, RegisterArgs, SetOperationalArgs, Step, UpdateArgs
from runner.observe import find_dataset
from runner.plan import PREPARE_TASKS
from runner.privacy import REGISTER_CONSTANTS, REGISTER_FIELDS, SET_OPERATIONAL_FIELDS, UPDATABLE_FIELDS, json_safe
from runner.state import DatasetDir


def register(ctx: RunContext, step: Step) -> str:
    """POST datasets/ with the raw data's hash; an uncertain POST is resolved by looking before sending again."""
    args = step.args
    assert isinstance(args, RegisterArgs)
    spec = ctx.manifest.dataset(step.dataset)
    prep = int(args.data_preparation_mlcube)
    raw = ctx.raw_hash(step.dataset)
    values = {"name": spec.name, "description": spec.description, "location": spec.location,
              "input_data_hash": raw, "generated_uid": raw,  # MedPerf: the raw hash until set operational
              "data_preparation_mlcube": prep, **REGISTER_CONSTANTS,
              "submitted_as_prepared": bool(args.submitted_as_prepared)}
    body = {k: values[k] for k in REGISTER_FIELDS}
    with ctx.journal(step, dataset=spec.name, data_preparation_mlcube=prep, input_data_hash=raw):
        try:
            ds_id = int(ctx.api.create("datasets/", body)["id"])
        except ServerWriteUncertain:
            # The POST may have landed: look before sending it again (never twice blindly).
            found = find_dataset(ctx.api, spec.name, prep, raw)
            if found is not None and found.input_data_hash == raw:
                ds_id = found.id
            else:
                ds_id = int(ctx.api.create("datasets/", body)["id"])
        ctx.memory.remember_dataset(spec.name, ds_id)
        ctx.state.dataset(ds_id).write_raw_yaml(spec.data_path, spec.labels_path)
    return f"dataset {ds_id}"


def update(ctx: RunContext, step: Step) -> str:
    """PUT datasets/{id}/ with exactly the fields the manifest changed (MedPerf allows it in DEVELOPMENT)."""
    args = step.args
    assert isinstance(args, UpdateArgs)
    ds_id = ctx.dataset_id(step)
    body = {f: args.changes[f] for f in UPDATABLE_FIELDS if f in args.changes}
    with ctx.journal(step, dataset_id=ds_id, fields=sorted(body)):
        ctx.api.update(f"datasets/{ds_id}/", body)
    return f"dataset {ds_id}: {', '.join(f'{f} {v!r}' for f, v in body.items())}"


def prepare(ctx: RunContext, step: Step) -> str:
    """Run prepare (unless ready), sanity_check and statistics with MedPerf's mounts; .ready when all passed."""
    args = step.args
    assert isinstance(args, PrepareArgs)
    spec = ctx.manifest.dataset(step.dataset)
    ds_id = ctx.dataset_id(step)
    record = ctx.obs.containers.get(int(args.container))
    if record is None:
        raise StepFailed(f"container {args.container} was not observed on the server")
    container = ContainerSpec.from_record(record.record)
    ds = ctx.state.dataset(ds_id)
    with_metadata = container.declares("prepare", "metadata_path")
    with_report = container.declares("prepare", "report_file")
    try:
        for d in (ds.data, ds.labels, ds.logs) + ((ds.metadata,) if with_metadata else ()):
            d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateError(f"cannot create {e.filename}: {e.strerror}", where=str(ds.root)) from e
    if not ds.raw_yaml.exists():
        ds.write_raw_yaml(spec.data_path, spec.labels_path)
    runner = ctx.container_runner()
    image = f"{step.dataset}: image of {container.name}"
    try:
        runner.check_image(container, on_progress=ctx.progress.download(image))
    finally:
        ctx.progress.end(image)
    tasks = list(args.tasks or PREPARE_TASKS)
    if ds.is_ready() or args.as_prepared:
        tasks = [t for t in tasks if t != "prepare"]  # MedPerf: a ready dataset only re-checks
    ran: list[str] = []
    with ctx.journal(step, dataset_id=ds_id, tasks=tasks, local_copy=args.local_copy, as_prepared=args.as_prepared):
        if args.as_prepared and not ds.is_ready():
            _copy_prepared(spec.data_path, spec.labels_path, ds, with_metadata=with_metadata)
            ran.append("copy")
        for task in tasks:
            volumes = _volumes(task, spec.data_path, spec.labels_path, ds, with_metadata=with_metadata,
                               with_report=with_report)
            if task == "statistics" and not runner.adopts(container, task, volumes, log_path=ds.logs / f"{task}.log"):
                ds.statistics.unlink(missing_ok=True)  # a fresh statistics file, unless a dead run's job writes it
            _run_task(ctx, step, ds_id, container, task, volumes, report=task == "prepare" and not args.local_copy)
            ran.append(task)
        if not ds.read_statistics():
            ds.unmark_ready()
            raise StepFailed(f"dataset {spec.name}: the statistics task wrote no statistics "
                             f"({ds.statistics} is empty); the dataset can be prepared again",
                             log_path=str(ds.logs / "statistics.log"))
        if args.local_copy:
            _same_as_registered(ctx, step, ds_id, ds, args.generated_uid)
        ds.mark_ready()
    what = "local copy: " if args.local_copy else ""
    return f"dataset {ds_id}: {what}{', '.join(ran)} done"


def _copy_prepared(data_path: Path, labels_path: Path, ds: DatasetDir, *, with_metadata: bool) -> None:
    """MedPerf's --submit-as-prepared: the given folders become the dataset's data/ and labels/ (an empty metadata/
    when the preparation declares one), copied afresh, readable by the container's unprivileged user."""
    try:
        for source, target in ((data_path, ds.data), (labels_path, ds.labels)):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
            _readable(target)
        if with_metadata:
            shutil.rmtree(ds.metadata, ignore_errors=True)
            ds.metadata.mkdir(parents=True)
    except OSError as e:
        raise StepFailed(f"cannot copy the prepared data into {ds.root}: {e}",
                         hint="check the free space and permissions of the state dir, then apply again") from e


def _readable(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            p = os.path.join(root, d)
            os.chmod(p, os.stat(p).st_mode | 0o555)
        for f in files:
            p = os.path.join(root, f)
            os.chmod(p, os.stat(p).st_mode | 0o444)
    folder.chmod(folder.stat().st_mode | 0o555)


def _same_as_registered(ctx: RunContext, step: Step, ds_id: int, ds: DatasetDir, generated_uid: str) -> None:
    """The copy prepared here must be the data the server registered, or no model may run on it."""
    ctx.raw_hash(step.dataset)  # DriftError when the raw data changed since the plan
    local = ctx.hash([ds.data, ds.labels], f"{step.dataset} (prepared data)")
    if local != generated_uid:
        ds.unmark_ready()
        raise StepFailed(
            f"dataset {step.dataset} ({ds_id}): the data prepared here hashes to {local}, but the server registered "
            f"generated_uid {generated_uid}: the preparation is not reproducible on this machine (another version "
            "of the data preparation container, or of the raw data), so no model runs on it and nothing is sent",
            hint="prepare on the machine that registered it, or register this data as a new dataset")


def _volumes(task: str, data_path: Path, labels_path: Path, ds: DatasetDir, *, with_metadata: bool,
             with_report: bool) -> dict[str, Path]:
    """MedPerf's mounts of a preparation task: raw data in, prepared data out; the checks read the prepared."""
    if task == "prepare":
        volumes = {"data_path": data_path, "labels_path": labels_path, "output_path": ds.data,
                   "output_labels_path": ds.labels}
        if with_report:
            volumes["report_file"] = ds.report
    else:
        volumes = {"data_path": ds.data, "labels_path": ds.labels}
        if task == "statistics":
            volumes["output_path"] = ds.statistics
    if with_metadata:
        volumes["metadata_path"] = ds.metadata
    return volumes


def _report(ctx: RunContext, ds_id: int, status: str) -> None:
    """MedPerf's preparation status report; failures to send it are only noted, as MedPerf does."""
    try:
        ctx.api.update(f"datasets/{ds_id}/", {"report": {"progress": {}, "execution_status": status}})
    except PrivacyViolation:
        raise
    except MedperfApplyError as e:
        ctx.memory.warn(f"dataset {ds_id}: could not send status {status}: {e}")


def _run_task(ctx: RunContext, step: Step, ds_id: int, container: ContainerSpec, task: str,
              volumes: dict[str, Path], *, report: bool) -> None:
    ds = ctx.state.dataset(ds_id)
    log_path = ds.logs / f"{task}.log"
    if report:
        _report(ctx, ds_id, "started")
    label = f"{step.dataset}: {task}"
    try:
        try:
            ctx.container_runner().run_task(container, task, volumes, log_path=log_path,
                                            on_line=ctx.progress.task(label))
        finally:
            ctx.progress.end(label)
    except (Interrupted, KeyboardInterrupt):
        ds.unmark_ready()
        if report:
            _report(ctx, ds_id, "interrupted")
        raise
    except MedperfApplyError as e:
        ds.unmark_ready()
        if report:
            _report(ctx, ds_id, "failed")
        log = e.log_path or str(log_path)
        what = e.explain() if isinstance(e, ContainerError) else str(e)
        raise StepFailed(f"dataset {step.dataset}: task {task} of {container.name} {what}; log: {log}; "
                         "the dataset stays re-preparable: fix the cause and apply again", log_path=str(log)) from e
    if report:
        _report(ctx, ds_id, "finished")


def set_operational(ctx: RunContext, step: Step) -> str:
    """PUT datasets/{id}/ with the prepared data's hash and statistics, state OPERATION (irreversible)."""
    assert isinstance(step.args, SetOperationalArgs)
    spec = ctx.manifest.dataset(step.dataset)
    ds_id = ctx.dataset_id(step)
    ds = ctx.state.dataset(ds_id)
    if not ds.is_ready():
        raise StepFailed(f"dataset {spec.name} ({ds_id}) is not prepared (no .ready in {ds.root})")
    raw = ctx.raw_hash(step.dataset)
    prepared = ctx.hash([ds.data, ds.labels], f"{spec.name} (prepared data)")
    stats = ds.read_statistics()
    if not stats:
        raise StepFailed(f"dataset {spec.name}: {ds.statistics} is empty; prepare it again")
    values = {"input_data_hash": raw, "generated_uid": prepared, "generated_metadata": json_safe(stats),
              "state": SERVER_OPERATION}
    body = {k: values[k] for k in SET_OPERATIONAL_FIELDS}
    ctx.consent(step, body)
    with ctx.journal(step, dataset_id=ds_id, generated_uid=prepared):
        ctx.api.update(f"datasets/{ds_id}/", body)
    return f"dataset {ds_id} is operational (generated_uid {prepared[:12]}...)"
