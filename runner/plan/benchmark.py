"""PURE: one benchmark of a dataset: associate, await approval, run models, submit.

MedPerf's rules: latest association wins, the compatibility test is the reference model's run, the reference
model runs last.
"""

from __future__ import annotations

from dataclasses import replace

from runner.errors import AssociationRejected, ParticipationError
from runner.model import (
    Action,
    ApprovalStatus,
    AssociateArgs,
    AssociationGoal,
    AwaitApprovalArgs,
    BenchmarkSpec,
    Change,
    DatasetSpec,
    DesiredState,
    Note,
    Observation,
    Ref,
    RemoteAssociation,
    RemoteBenchmark,
    ResultsGoal,
    RunModelArgs,
    Step,
    SubmitArgs,
)
from runner.plan.common import preparation_container, resolve, step_key, with_consent
from runner.privacy import ASSOCIATE_SHOWN, RUN_SHOWN, SUBMIT_SHOWN


def benchmark_steps(spec: DatasetSpec, b: BenchmarkSpec, obs: Observation, dataset_steps: list[Step], *,
                    interactive: bool, request_again: bool = False) -> tuple[list[Step], list[Note]]:
    """Steps for one benchmark of a dataset: associate, await approval, run models, submit."""
    bench = resolve(Ref("benchmark", b.benchmark), obs, where=b.where, dataset=spec.name)
    assert isinstance(bench, RemoteBenchmark)
    p = _Participation(spec, b, bench, obs, dataset_steps, interactive=interactive)
    p.check()
    p.associate(request_again)
    p.await_approval()
    if b.results is ResultsGoal.NONE:
        return p.steps, p.notes
    p.run_models()
    return p.steps, p.notes


class _Participation:
    """The planning of one (dataset, benchmark) pair, step after step."""

    def __init__(self, spec: DatasetSpec, b: BenchmarkSpec, bench: RemoteBenchmark, obs: Observation,
                 dataset_steps: list[Step], *, interactive: bool):
        self.spec, self.b, self.bench, self.obs, self.interactive = spec, b, bench, obs, interactive
        self.where = str(b.where) if b.where else (str(spec.where) if spec.where else None)
        self.label = str(b.benchmark)
        by_action = {s.action: s for s in dataset_steps}
        self.ds_id: int | None = by_action[Action.REGISTER].args.dataset_id
        self.set_op = by_action.get(Action.SET_OPERATIONAL)  # absent when the dataset is not to be operational
        self.assoc: RemoteAssociation | None = obs.associations.get((self.ds_id, bench.id)) \
            if self.ds_id is not None else None
        self.status = self.assoc.approval_status if self.assoc is not None else None
        self.ref = bench.reference_model
        self.d_text = str(self.ds_id) if self.ds_id is not None else "?"
        self.keys = {a: step_key(spec.name, a, self.label)
                     for a in (Action.ASSOCIATE, Action.AWAIT_APPROVAL, Action.SUBMIT)}
        self.steps: list[Step] = []
        self.notes: list[Note] = []
        self.associating = self.status not in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)
        self.approved = self.status is ApprovalStatus.APPROVED
        self.gate_key: str | None = None

    def check(self) -> None:
        spec, bench = self.spec, self.bench
        if spec.state is not DesiredState.OPERATIONAL:
            raise ParticipationError(f"dataset {spec.name} lists benchmark {self.label}, but asks state "
                                     f"{spec.state.value}: taking part in a benchmark needs an operational dataset",
                                     where=self.where,
                                     hint="set state: operational, or remove the benchmark from this dataset")
        prep = preparation_container(spec, self.obs)
        if bench.data_preparation_mlcube != prep:
            raise ParticipationError(
                f"dataset {spec.name} is prepared with container {prep}, but benchmark {bench.name} ({bench.id}) "
                f"uses container {bench.data_preparation_mlcube}: the specified dataset wasn't prepared for this "
                "benchmark", where=self.where,
                hint=f"register a dataset prepared with prepare_with: {{benchmark: {bench.name}}} to take part in it")

    def _name(self, model: int | None) -> str:
        return f"b{self.bench.id}m{model}d{self.d_text}"

    def associate(self, request_again: bool) -> None:
        spec, bench, assoc, status = self.spec, self.bench, self.assoc, self.status
        if status is ApprovalStatus.REJECTED and not request_again:
            # Never asked again on its own (a nightly CI run would re-request after every rejection).
            raise AssociationRejected(
                f"dataset {spec.name} ({self.ds_id}): the association request with benchmark {bench.name} "
                f"({bench.id}) was REJECTED (decided {assoc.approved_at or assoc.created_at}); it is not requested "
                "again on its own", where=self.where,
                hint=f"talk to the benchmark owner; once they agree, send a new request (as `medperf dataset "
                     f"associate` does after a rejection) with `medperf-apply apply MANIFEST --request-again "
                     f"--target dataset/{spec.name}/benchmark/{self.label}`")
        key = self.keys[Action.ASSOCIATE]
        if not self.associating:
            when = f"requested {assoc.created_at}" if status is ApprovalStatus.PENDING else \
                f"approved {assoc.approved_at}".rstrip()
            self.steps.append(Step(key, Action.ASSOCIATE, spec.name, Change.DONE, f"associated ({status}, {when})",
                                   benchmark=self.label, args=AssociateArgs(self.ds_id, bench.id)))
            return
        skip = bench.skip_compatibility_tests
        ref_res = self.obs.results.get((bench.id, self.ref, self.ds_id)) \
            if self.ds_id is not None and self.ref is not None else None
        ref_cached = ref_res is not None and not ref_res.finalized and self._executed(ref_res.id)
        if skip:
            detail = "compatibility test skipped (benchmark metadata skip_compatibility_tests)"
        elif ref_res is not None and (ref_cached or ref_res.finalized):
            detail = f"reuses the run of model {self.ref} (reference, result {ref_res.id}, from cache)"
        else:
            detail = f"runs model {self.ref} (reference) + evaluator"
        rejected = status is ApprovalStatus.REJECTED
        reason = f"the last request was REJECTED ({assoc.approved_at or assoc.created_at}): requested again " \
            "(--request-again)" if rejected else "not requested yet"
        args = AssociateArgs(self.ds_id, bench.id, reference_model=self.ref, evaluator=bench.data_evaluator_mlcube,
                             skip_test=skip, result_id=ref_res.id if ref_res is not None else None,
                             name=self._name(self.ref), ignore_model_errors=self.b.ignore_model_errors)
        base = dict(key=key, action=Action.ASSOCIATE, dataset=spec.name, benchmark=self.label,
                    endpoint="POST /datasets/benchmarks/", sends=ASSOCIATE_SHOWN, detail=detail, args=args,
                    after=(self.set_op.key,), show_reason=rejected)
        if self.set_op.change is Change.GATE:
            self.steps.append(Step(change=Change.GATE, reason="waits for set operational (an association needs an "
                                   "operational dataset)", **base))
        elif skip:
            self.steps.append(Step(change=Change.TODO, reason=reason, **base))
        else:
            self.steps.append(with_consent(spec, "compatibility_results", "the compatibility test's metrics", reason,
                                           base, interactive=self.interactive))

    def await_approval(self) -> None:
        if self.b.association is not AssociationGoal.APPROVED:
            return
        assoc, key = self.assoc, self.keys[Action.AWAIT_APPROVAL]
        self.gate_key = key
        common = dict(dataset_id=self.ds_id, benchmark_id=self.bench.id)
        if self.approved:
            self.steps.append(Step(key, Action.AWAIT_APPROVAL, self.spec.name, Change.DONE,
                                   f"approved {assoc.approved_at}".rstrip(), benchmark=self.label,
                                   args=AwaitApprovalArgs(**common)))
            return
        if self.associating and self.bench.dataset_auto_approval_mode == "ALWAYS":
            why = "the benchmark approves requests automatically (policy ALWAYS)"
        else:
            why = "benchmark owner must approve"
        if self.status is ApprovalStatus.PENDING:
            why += f" (requested {assoc.created_at})"
        self.steps.append(Step(key, Action.AWAIT_APPROVAL, self.spec.name, Change.GATE, why, benchmark=self.label,
                               args=AwaitApprovalArgs(**common, requested_at=assoc.created_at if assoc else None),
                               after=(self.keys[Action.ASSOCIATE],)))

    def run_models(self) -> None:
        spec, b, bench, obs = self.spec, self.b, self.bench, self.obs
        listed = obs.benchmark_models.get(bench.id)
        known, unknown_rest = _models(spec, b, bench, listed, obs, self.where)
        if b.models != "all" and listed is None:
            self.notes.append(Note(f"benchmark {self.label}: the server lists the benchmark's models once the "
                                   "association is approved; the manifest's models are checked against them then",
                                   spec.name))
        if not self.approved and self.gate_key is None:
            others = [m for m in known if m != self.ref] or unknown_rest
            if others:
                self.notes.append(Note(f"benchmark {self.label}: association: requested does not wait for approval; "
                                       "the models other than the reference run (and results are submitted) once "
                                       "the benchmark owner approves: apply again then", spec.name))
            return
        to_submit: list[int] = []
        submitted: list[int] = []
        for m in known:
            step, finalized = self._run_model(m)
            (submitted if finalized else to_submit).append(m)
            self.steps.append(step)
        common = dict(dataset_id=self.ds_id, benchmark_id=bench.id)
        if unknown_rest:
            key = step_key(spec.name, Action.RUN_MODEL, self.label, "approved")
            self.steps.append(Step(key, Action.RUN_MODEL, spec.name, Change.GATE, "the benchmark's other approved "
                                   "models are listed once the benchmark owner approves", benchmark=self.label,
                                   args=RunModelArgs(**common), after=(self.gate_key,) if self.gate_key else ()))
        if b.results is not ResultsGoal.SUBMITTED:
            return
        key = self.keys[Action.SUBMIT]
        if not to_submit and not unknown_rest:
            n = len(submitted)
            self.steps.append(Step(key, Action.SUBMIT, spec.name, Change.DONE,
                                   f"{n} result{'s' if n != 1 else ''} submitted", benchmark=self.label,
                                   args=SubmitArgs(**common, submitted=tuple(submitted))))
            return
        reason = "computed results not submitted yet" + (f" ({len(submitted)} already submitted)" if submitted else "")
        base = dict(key=key, action=Action.SUBMIT, dataset=spec.name, benchmark=self.label,
                    endpoint="PUT /results/{id}/", sends=SUBMIT_SHOWN,
                    args=SubmitArgs(**common, models=tuple(to_submit), submitted=tuple(submitted),
                                    more=bool(unknown_rest)),
                    after=tuple(k for k in (self.gate_key,) if k))
        self.steps.append(with_consent(spec, "results", "the models' metrics", reason, base,
                                       interactive=self.interactive))

    def _run_model(self, m: int) -> tuple[Step, bool]:
        """The step of one model, and whether its result is final (submitted)."""
        bench, obs, ds_id = self.bench, self.obs, self.ds_id
        is_ref = m == self.ref
        res = obs.results.get((bench.id, m, ds_id)) if ds_id is not None else None
        key = step_key(self.spec.name, Action.RUN_MODEL, self.label, str(m))
        args = RunModelArgs(ds_id, bench.id, model=m, reference=is_ref, evaluator=bench.data_evaluator_mlcube,
                            result_id=res.id if res is not None and not res.finalized else None,
                            name=self._name(m), ignore_model_errors=self.b.ignore_model_errors)
        done = dict(key=key, action=Action.RUN_MODEL, dataset=self.spec.name, change=Change.DONE,
                    benchmark=self.label)
        if res is not None and res.finalized:
            return Step(reason=f"result {res.id} submitted", **done,
                        args=replace(args, result_id=res.id, partial=res.partial, from_cache=True)), True
        if res is not None and self._executed(res.id):
            return Step(reason=f"result {res.id} computed here (from cache)", **done,
                        args=replace(args, partial=obs.local_results[res.id].partial, from_cache=True)), False
        if is_ref and self.associating and not self.bench.skip_compatibility_tests:
            return Step(reason=f"done by the association test (b{bench.id}m{m}d{self.d_text})", **done,
                        args=replace(args, by_association=True, from_cache=True)), False
        reused = res is not None
        reason = f"result record {res.id} exists but was not run here: runs with it" if reused else "not run yet"
        after = (self.keys[Action.ASSOCIATE],) if is_ref or self.gate_key is None else (self.gate_key,)
        return Step(key, Action.RUN_MODEL, self.spec.name, Change.TODO, reason, benchmark=self.label,
                    detail="infer + evaluate", endpoint="POST /results/", sends=RUN_SHOWN, args=args, after=after,
                    show_reason=reused), False

    def _executed(self, result_id: int) -> bool:
        local = self.obs.local_results.get(result_id)
        return local is not None and local.executed


def _models(spec: DatasetSpec, b: BenchmarkSpec, bench: RemoteBenchmark, listed: tuple[int, ...] | None,
            obs: Observation, where: str | None) -> tuple[list[int], bool]:
    """The models to run, in the server's priority order with the reference model last (as MedPerf appends it),
    and whether more are to come once the server lists them (it does not before approval)."""
    ref = bench.reference_model
    if b.models == "all":
        if listed is None:
            return ([ref] if ref is not None else []), True
        return [m for m in listed if m != ref] + ([ref] if ref is not None else []), False
    wanted: list[int] = []
    for m in b.models:
        if isinstance(m, str):
            if m not in obs.model_names:
                raise ParticipationError(f"dataset {spec.name}, benchmark {b.benchmark}: no model named {m!r} on "
                                         f"{obs.server_url}", where=where, hint="check the model's name or use its id")
            m = obs.model_names[m]
        wanted.append(int(m))
    if listed is not None:
        allowed = set(listed) | ({ref} if ref is not None else set())
        bad = [m for m in wanted if m not in allowed]
        if bad:
            names = {v: k for k, v in obs.model_names.items()}
            shown = ", ".join(f"{m}" + (f" ({names[m]})" if m in names else "") for m in bad)
            raise ParticipationError(
                f"dataset {spec.name}: model{'s' if len(bad) > 1 else ''} {shown} of the manifest "
                f"{'are' if len(bad) > 1 else 'is'} not associated with benchmark {bench.name} ({bench.id})",
                where=where, hint=f"the benchmark's models: {', '.join(str(m) for m in sorted(allowed))}")
        order = {m: i for i, m in enumerate(listed)}
        wanted.sort(key=lambda m: (m == ref, order.get(m, len(order))))
    else:
        wanted.sort(key=lambda m: m == ref)
    return list(dict.fromkeys(wanted)), False
