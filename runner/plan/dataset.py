"""PURE: the dataset lifecycle's steps: register, prepare, set operational, in that order; drift stops the plan."""

from __future__ import annotations

from runner.errors import DriftError, ReferenceNotFound
from runner.model import (
    Action,
    Change,
    DatasetSpec,
    DesiredState,
    LocalDataset,
    Note,
    Observation,
    PrepareArgs,
    Ref,
    RegisterArgs,
    RemoteContainer,
    RemoteDataset,
    SetOperationalArgs,
    Step,
    UpdateArgs,
    identify,
)
from runner.plan.common import preparation_container, resolve, sends, step_key, with_consent
from runner.privacy import PREPARE_REPORT_FIELDS, REGISTER_FIELDS, SET_OPERATIONAL_FIELDS

PREPARE_TASKS = ("prepare", "sanity_check", "statistics")
CHECK_TASKS = ("sanity_check", "statistics")  # all that runs on data submitted as prepared


def dataset_steps(spec: DatasetSpec, obs: Observation, *, interactive: bool
                  ) -> tuple[list[Step], list[Note], RemoteDataset | None]:
    """The steps that take one dataset to its state, the notes to show, and the server's record of it (or None)."""
    prep = preparation_container(spec, obs)
    if prep is None:
        raise ReferenceNotFound(f"dataset {spec.name}: {spec.prepare_with} names no data preparation container",
                                where=str(spec.where) if spec.where else None)
    container = obs.containers.get(prep)
    cname = container.name if container else f"container {prep}"
    for b in spec.benchmarks:  # an unknown benchmark stops the plan before anything is done
        resolve(Ref("benchmark", b.benchmark), obs, where=b.where, dataset=spec.name)

    raw_hash = obs.raw_hashes[spec.name]
    ds, notes = _identify(spec, obs, prep, raw_hash)
    if ds is not None and ds.input_data_hash != raw_hash:
        raise DriftError(
            f"dataset {spec.name} (id {ds.id}): the raw data changed since it was registered: "
            f"the server has input_data_hash {ds.input_data_hash}, the raw folders now hash to {raw_hash}",
            where=str(spec.where) if spec.where else None,
            hint="restore the original data, or register the changed data as a new dataset under a new name",
        )
    if ds is not None and ds.submitted_as_prepared != spec.prepared:
        said = "registered as prepared data" if ds.submitted_as_prepared else "registered as raw data"
        raise DriftError(
            f"dataset {spec.name} (id {ds.id}) was {said} (submitted_as_prepared "
            f"{str(ds.submitted_as_prepared).lower()}), but the manifest says prepared: {str(spec.prepared).lower()}",
            where=str(spec.where) if spec.where else None,
            hint=f"set prepared: {str(ds.submitted_as_prepared).lower()} again, or register the data under a new name")
    local = obs.local.get(ds.id) if ds is not None else None
    unfinished = {e.get("step") for e in obs.unfinished}
    keys = {a: step_key(spec.name, a) for a in (Action.REGISTER, Action.UPDATE, Action.PREPARE, Action.SET_OPERATIONAL)}
    steps = [_register(spec, ds, container, prep, raw_hash, keys, unfinished)]
    update, note = _update(spec, ds)
    steps.extend([update] if update else [])
    notes.extend([note] if note else [])
    if spec.state.rank >= DesiredState.PREPARED.rank:
        step, note = _prepare(spec, ds, local, container, cname, prep, keys, unfinished)
        steps.append(step)
        notes.extend([note] if note else [])
    if spec.state.rank >= DesiredState.OPERATIONAL.rank:
        if ds is not None and ds.operational:
            steps.append(Step(keys[Action.SET_OPERATIONAL], Action.SET_OPERATIONAL, spec.name, Change.DONE,
                              "operational on the server", args=SetOperationalArgs(ds.id)))
        else:
            steps.append(_set_operational(spec, ds, keys, interactive=interactive, update_planned=update is not None))

    reached = _reached(ds, local)  # asking less than exists is satisfied
    if reached.rank > spec.state.rank:
        notes.append(Note(f"the manifest asks state {spec.state.value}; dataset {ds.id} is already {reached.value} "
                          f"(states only move forward): nothing to undo", spec.name))
    return steps, notes, ds


def _identify(spec: DatasetSpec, obs: Observation, prep: int, raw_hash: str) -> tuple[RemoteDataset | None, list[Note]]:
    notes = [Note(f"dataset {other.id} is also named {spec.name} but prepared with container "
                  f"{other.data_preparation_mlcube}, not {prep}: it is not this one", spec.name)
             for other in obs.my_datasets if other.name == spec.name and other.data_preparation_mlcube != prep]
    chosen, mine = identify(obs.my_datasets, spec.name, prep, raw_hash)
    if chosen is not None and len(mine) > 1:
        notes.append(Note(f"{len(mine)} of my datasets are named {spec.name} with container {prep} "
                          f"(ids {', '.join(str(d.id) for d in mine)}): using {chosen.id}", spec.name))
    return chosen, notes


def _register(spec: DatasetSpec, ds: RemoteDataset | None, container: RemoteContainer | None, prep: int,
              raw_hash: str, keys: dict, unfinished: set) -> Step:
    key = keys[Action.REGISTER]
    if ds is not None:
        resumed = " (it had landed before an earlier run stopped)" if key in unfinished else ""
        return Step(key, Action.REGISTER, spec.name, Change.DONE, f"registered as dataset {ds.id}{resumed}",
                    args=RegisterArgs(dataset_id=ds.id))
    _usable(container, spec)
    reason = "not on the server"
    if key in unfinished:
        reason = "an earlier run stopped during register and the dataset is not on the server"
    return Step(key, Action.REGISTER, spec.name, Change.TODO, reason, endpoint="POST /datasets/",
                sends=sends("POST", "datasets/", "register", REGISTER_FIELDS),
                detail="the folders hold prepared data" if spec.prepared else "",
                args=RegisterArgs(data_preparation_mlcube=prep, input_data_hash=raw_hash,
                                  submitted_as_prepared=spec.prepared))


def _prepare(spec: DatasetSpec, ds: RemoteDataset | None, local: LocalDataset | None,
             container: RemoteContainer | None, cname: str, prep: int, keys: dict, unfinished: set
             ) -> tuple[Step, Note | None]:
    key = keys[Action.PREPARE]
    ready = local is not None and local.ready
    if ds is not None and ds.operational:
        if ready:
            return Step(key, Action.PREPARE, spec.name, Change.DONE, "operational on the server",
                        args=PrepareArgs(dataset_id=ds.id)), None
        # No prepared copy here (a new machine or state dir): made again if a model is to run on it; the planner
        # turns this back into "done" when nothing needs it.
        _usable(container, spec)
        tasks = CHECK_TASKS if spec.prepared else PREPARE_TASKS
        return Step(key, Action.PREPARE, spec.name, Change.TODO,
                    "operational on the server, but this state dir has no prepared copy: prepared again here, and "
                    "checked against the server's generated_uid before any model runs",
                    detail=_prepare_detail(spec, cname, tasks),
                    args=PrepareArgs(dataset_id=ds.id, container=prep, tasks=tasks, local_copy=True,
                                     generated_uid=ds.generated_uid, as_prepared=spec.prepared)), None
    if ready and local.has_statistics:  # .ready without statistics.yaml: re-checked below, never stuck
        return Step(key, Action.PREPARE, spec.name, Change.DONE, "prepared (.ready in the state dir)",
                    args=PrepareArgs(dataset_id=ds.id)), None
    _usable(container, spec)
    reason = _prepare_reason(local, key, unfinished)
    note = Note(reason, spec.name) if (local is not None and local.started) or key in unfinished else None
    path = f"datasets/{ds.id if ds else 1}/"  # any id: the allowlist's fields do not depend on it
    tasks = CHECK_TASKS if spec.prepared else PREPARE_TASKS
    # MedPerf reports the preparation's status around the prepare task only: data submitted as prepared sends none.
    return Step(key, Action.PREPARE, spec.name, Change.TODO, reason, detail=_prepare_detail(spec, cname, tasks),
                sends=() if spec.prepared else sends("PUT", path, "preparation status", PREPARE_REPORT_FIELDS),
                args=PrepareArgs(dataset_id=ds.id if ds else None, container=prep, tasks=tasks,
                                 as_prepared=spec.prepared),
                after=(keys[Action.REGISTER],)), note


def _prepare_detail(spec: DatasetSpec, cname: str, tasks: tuple[str, ...]) -> str:
    copied = "copy the prepared folders, then " if spec.prepared else ""
    return f"{copied}{cname}: {', '.join(tasks)}"


def _update(spec: DatasetSpec, ds: RemoteDataset | None) -> tuple[Step | None, Note | None]:
    """The registered fields that differ from the manifest: a step while MedPerf lets them change (DEVELOPMENT),
    a note once the dataset is operational (they are locked then)."""
    if ds is None:
        return None, None
    wanted = {"description": spec.description, "location": spec.location}
    changes = {f: v for f, v in wanted.items() if v != getattr(ds, f)}
    if not changes:
        return None, None
    was = {f: getattr(ds, f) for f in changes}
    shown = "; ".join(f"{f}: {was[f]!r} -> {v!r}" for f, v in changes.items())
    if ds.operational:
        return None, Note(f"dataset {ds.id} is operational, so the server keeps its registered {', '.join(changes)} "
                          f"({shown}): MedPerf locks them once a dataset is operational; set them back in the "
                          "manifest, or register the data as a new dataset to change them", spec.name)
    key = step_key(spec.name, Action.UPDATE)
    return Step(key, Action.UPDATE, spec.name, Change.TODO, f"the manifest changed {', '.join(changes)}",
                endpoint=f"PUT /datasets/{ds.id}/", detail=shown,
                sends=sends("PUT", f"datasets/{ds.id}/", "dataset update", tuple(changes)),
                args=UpdateArgs(dataset_id=ds.id, changes=changes, was=was)), None


def _usable(container: RemoteContainer | None, spec: DatasetSpec) -> None:
    if container is not None and not container.is_valid:
        raise ReferenceNotFound(f"dataset {spec.name}: container {container.name} ({container.id}) is marked as "
                                f"INVALID on the server", where=str(spec.where) if spec.where else None,
                                hint="ask the benchmark owner which data preparation container to use")


def _prepare_reason(local: LocalDataset | None, key: str, unfinished: set) -> str:
    if local is not None and local.ready and not local.has_statistics:
        return "prepared, but statistics.yaml is missing: sanity_check and statistics run again"
    if key in unfinished:
        return "an earlier run stopped during prepare (no .ready): prepare runs again"
    if local is not None and local.started:
        return "a previous prepare did not finish (no .ready): prepare runs again"
    return "not prepared yet"


def _set_operational(spec: DatasetSpec, ds: RemoteDataset | None, keys: dict, *, interactive: bool,
                     update_planned: bool = False) -> Step:
    fields = sends("PUT", f"datasets/{ds.id if ds else 1}/", "set operational", SET_OPERATIONAL_FIELDS)
    base = dict(key=keys[Action.SET_OPERATIONAL], action=Action.SET_OPERATIONAL, dataset=spec.name, sends=fields,
                endpoint=f"PUT /datasets/{ds.id if ds else '{id}'}/",
                args=SetOperationalArgs(ds.id if ds else None),
                after=(keys[Action.PREPARE],) + ((keys[Action.UPDATE],) if update_planned else ()))
    return with_consent(spec, "statistics", "the statistics", "prepared data not yet declared operational", base,
                        interactive=interactive, consequence=", so it cannot become operational")


def _reached(ds: RemoteDataset | None, local: LocalDataset | None) -> DesiredState:
    if ds is None:
        return DesiredState.REGISTERED  # nothing exists; never more than what is asked
    if ds.operational:
        return DesiredState.OPERATIONAL
    if local is not None and local.ready:
        return DesiredState.PREPARED
    return DesiredState.REGISTERED
