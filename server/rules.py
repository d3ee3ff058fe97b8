"""PURE rules of the registry: who may do what, and which state changes are allowed.

Inputs are plain dicts (rows as store.py returns them, the caller as a user dict or None); outputs are
booleans, values to store, or a raised Invalid (400) / Forbidden (403). No I/O: a test enforces it.
"""

from __future__ import annotations

from server.errors import NON_FIELD, Forbidden, Invalid

PENDING, APPROVED, REJECTED = "PENDING", "APPROVED", "REJECTED"
DEVELOPMENT, OPERATION = "DEVELOPMENT", "OPERATION"
NEVER, ALWAYS, ALLOWLIST = "NEVER", "ALWAYS", "ALLOWLIST"

DATASET_EDITABLE_IN_OPERATION = frozenset({"is_valid", "user_metadata"})
MODEL_EDITABLE_IN_OPERATION = frozenset({"is_valid", "user_metadata"})
MLCUBE_EDITABLE_IN_OPERATION = frozenset({"is_valid", "user_metadata", "additional_files_tarball_url"})
BENCHMARK_EDITABLE_IN_OPERATION = frozenset({
    "is_valid", "is_active", "user_metadata", "approval_status", "demo_dataset_tarball_url",
    "dataset_auto_approval_mode", "dataset_auto_approval_allow_list",
    "model_auto_approval_mode", "model_auto_approval_allow_list",
})
BENCHMARK_PRIVATE_FIELDS = ("dataset_auto_approval_allow_list", "model_auto_approval_allow_list")
DATASET_PRIVATE_FIELDS = ("report",)

MSG_OPERATION_LOCKED = "User cannot update non editable fields in Operation mode"
MSG_DUPLICATE_UID = "An Operational dataset with the same generated UID already exists"
MSG_BACK_TO_DEVELOPMENT = "Cannot change state from OPERATION to DEVELOPMENT"
MSG_BENCHMARK_NOT_APPROVED = "Association requests can be made only on an approved benchmark"
MSG_DATASET_NOT_OPERATIONAL = "Association requests can be made only on an operational dataset"
MSG_MODEL_NOT_OPERATIONAL = "Association requests can be made only on an operational model"
MSG_PREP_MISMATCH = "The dataset was not prepared with the benchmark's data preparation container"
MSG_ONLY_IF_REJECTED = "User can create a new request only if prior request is rejected"
MSG_NO_DIRECT_APPROVED = "User cannot create an approved association request"
MSG_REJECT_ONLY_APPROVED = "User can create a rejected association only if the latest one is approved"
MSG_NOT_PENDING = "User can approve or reject an association request only if it is pending"
MSG_SET_PENDING = "User can only approve or reject an association request"
MSG_SELF_APPROVE = "Same user cannot approve the association request"
MSG_FINALIZED = "User cannot update a result object after it's been finalized."
MSG_MODEL_ASSOC = "Model-Benchmark association must be approved"
MSG_DATASET_ASSOC = "Dataset-Benchmark association must be approved"
MSG_ONE_PENDING_BENCHMARK = "User can own at most one pending benchmark"
MSG_COMPONENTS_DEVELOPMENT = "Benchmark cannot be in OPERATION while any of its components is in DEVELOPMENT"


# ---------------------------------------------------------------- actors


def is_admin(user: dict | None) -> bool:
    return bool(user and user.get("is_admin"))


def owns(user: dict | None, record: dict | None) -> bool:
    return bool(user and record and record.get("owner") == user["id"])


def require(allowed: bool):
    """Raise Forbidden (403) unless `allowed`."""
    if not allowed:
        raise Forbidden()


# ---------------------------------------------------------------- permissions


def can_edit_owned(user, record) -> bool:
    """Containers, models, benchmarks, datasets: admin or owner."""
    return is_admin(user) or owns(user, record)


def can_view_user(user, target_id: int, prepares_their_data: bool) -> bool:
    """Admin, the user themself, or the owner of a preparation container used by their datasets."""
    return is_admin(user) or (user is not None and user["id"] == target_id) or prepares_their_data


def sees_full_benchmark(user, benchmark) -> bool:
    return is_admin(user) or owns(user, benchmark)


def sees_full_dataset(user, dataset, prep_mlcube) -> bool:
    """Admin, the dataset owner and the owner of its preparation container see `report`."""
    return is_admin(user) or owns(user, dataset) or owns(user, prep_mlcube)


def can_list_benchmark_models(user, benchmark, owns_approved_dataset: bool) -> bool:
    """Refused to a data owner until one of their datasets' latest association is APPROVED."""
    return is_admin(user) or owns(user, benchmark) or owns_approved_dataset


def can_list_benchmark_datasets(user, benchmark, owns_approved_model: bool) -> bool:
    return is_admin(user) or owns(user, benchmark) or owns_approved_model


def can_list_benchmark_results(user, benchmark) -> bool:
    return is_admin(user) or owns(user, benchmark)


def can_request_dataset_association(user, dataset, benchmark) -> bool:
    return is_admin(user) or owns(user, dataset) or owns(user, benchmark)


def can_see_dataset_association(user, dataset, benchmark) -> bool:
    return is_admin(user) or owns(user, dataset) or owns(user, benchmark)


def can_list_dataset_associations(user, dataset) -> bool:
    return is_admin(user) or owns(user, dataset)


def can_request_model_association(user, model, benchmark) -> bool:
    return is_admin(user) or owns(user, model) or owns(user, benchmark)


def can_see_model_association(user, model, benchmark) -> bool:
    return is_admin(user) or owns(user, model) or owns(user, benchmark)


def can_set_priority(user, benchmark) -> bool:
    return is_admin(user) or owns(user, benchmark)


def can_create_result(user, dataset) -> bool:
    """Admin or the owner of the dataset named in the body."""
    return is_admin(user) or owns(user, dataset)


def can_view_result(user, result, dataset, benchmark) -> bool:
    return is_admin(user) or owns(user, dataset) or owns(user, benchmark)


def can_edit_result(user, result, dataset) -> bool:
    return is_admin(user) or owns(user, dataset)


def can_list_all_results(user) -> bool:
    return is_admin(user)


def can_change_benchmark_approval(user) -> bool:
    """Any benchmark PUT whose body carries approval_status is admin-only, even with the same value."""
    return is_admin(user)


# ---------------------------------------------------------------- views


def public_benchmark(benchmark: dict) -> dict:
    return {k: v for k, v in benchmark.items() if k not in BENCHMARK_PRIVATE_FIELDS}


def public_dataset(dataset: dict) -> dict:
    return {k: v for k, v in dataset.items() if k not in DATASET_PRIVATE_FIELDS}


def benchmark_view(user, benchmark: dict) -> dict:
    """Owner and admin see the auto-approval allow lists; everyone else the public fields."""
    return benchmark if sees_full_benchmark(user, benchmark) else public_benchmark(benchmark)


# ---------------------------------------------------------------- state transitions


def changed_fields(current: dict, body: dict) -> dict:
    """The body's fields whose value differs from the current record (re-sending a value is no change)."""
    return {k: v for k, v in body.items() if current.get(k) != v}


def _locked_when_operational(current: dict, changes: dict, editable: frozenset):
    if current["state"] != OPERATION:
        return
    if changes.get("state") == DEVELOPMENT:
        raise Invalid({"state": [MSG_BACK_TO_DEVELOPMENT]})
    if set(changes) - editable:
        raise Invalid(MSG_OPERATION_LOCKED)


def check_dataset_update(current: dict, body: dict, uid_taken_by_operational: bool) -> dict:
    """Return the changes to store for PUT /datasets/{id}/ or raise Invalid.

    `uid_taken_by_operational`: another OPERATION dataset already has the generated_uid this dataset
    would have after the update (the caller asks the store).
    """
    changes = changed_fields(current, body)
    _locked_when_operational(current, changes, DATASET_EDITABLE_IN_OPERATION)
    becomes_operational = current["state"] == DEVELOPMENT and changes.get("state") == OPERATION
    if becomes_operational and uid_taken_by_operational:
        raise Invalid(MSG_DUPLICATE_UID)
    return changes


def check_mlcube_update(current: dict, body: dict) -> dict:
    changes = changed_fields(current, body)
    _locked_when_operational(current, changes, MLCUBE_EDITABLE_IN_OPERATION)
    return changes


def check_model_update(current: dict, body: dict) -> dict:
    changes = changed_fields(current, body)
    _locked_when_operational(current, changes, MODEL_EDITABLE_IN_OPERATION)
    return changes


def check_unique_name(existing: dict | None, resource: str):
    """A name already taken by `existing` (the record found under it, or None) is refused."""
    if existing is not None:
        raise Invalid({"name": [f"{resource} with this name already exists."]})


def check_tarball_fields(url: str, tarball_hash: str):
    """Additional files: URL and hash both set or both empty."""
    if bool(url) != bool(tarball_hash):
        raise Invalid("additional_files_tarball_url and additional_files_tarball_hash must be both set or both empty")


def check_nested_container(model_body: dict, container_body: dict) -> dict:
    """A model's state and is_valid must equal its nested container's; missing ones are inherited."""
    out = dict(container_body)
    for key, default in (("state", DEVELOPMENT), ("is_valid", True)):
        model_value = model_body.get(key, default)
        if key in out and out[key] != model_value:
            raise Invalid({"container": [f"The container's {key} must equal the model's {key}"]})
        out[key] = model_value
    return out


def initial_benchmark_approval(owner_email: str, auto_approve_from: tuple[str, ...], owner_pending: int) -> str:
    """APPROVED for owners in the auto-approve list; otherwise PENDING, at most one per owner."""
    if owner_email in auto_approve_from:
        return APPROVED
    if owner_pending >= 1:
        raise Invalid(MSG_ONE_PENDING_BENCHMARK)
    return PENDING


def check_benchmark_components(state: str, component_states: list[str]):
    if state == OPERATION and DEVELOPMENT in component_states:
        raise Invalid(MSG_COMPONENTS_DEVELOPMENT)


def check_benchmark_update(user, current: dict, body: dict, component_states: list[str]) -> dict:
    """Return the changes for PUT /benchmarks/{id}/; approval_status in the body is admin-only (403)."""
    if "approval_status" in body and not can_change_benchmark_approval(user):
        raise Forbidden()
    changes = changed_fields(current, body)
    _locked_when_operational(current, changes, BENCHMARK_EDITABLE_IN_OPERATION)
    check_benchmark_components(changes.get("state", current["state"]), component_states)
    return changes


# ---------------------------------------------------------------- associations


def association_status_on_create(
    *,
    initiator: dict,
    requested: str,
    latest: dict | None,
    subject_owner: dict,
    benchmark: dict,
    mode_field: str,
    allow_list_field: str,
) -> str:
    """The approval_status a new association row gets, or Invalid.

    `subject_owner` owns the dataset (or model); mode/allow-list fields select the benchmark's policy.
    History rules against the latest row of the pair: none -> only PENDING; REJECTED -> PENDING again;
    PENDING/APPROVED -> no new request; APPROVED never directly; REJECTED only to revoke an APPROVED.
    """
    latest_status = latest["approval_status"] if latest else None
    if requested == APPROVED:
        raise Invalid({"approval_status": [MSG_NO_DIRECT_APPROVED]})
    if requested == REJECTED:
        if latest_status != APPROVED:
            raise Invalid({"approval_status": [MSG_REJECT_ONLY_APPROVED]})
        return REJECTED
    if latest_status in (PENDING, APPROVED):
        raise Invalid(MSG_ONLY_IF_REJECTED)
    # A PENDING request: auto-approval.
    if subject_owner["id"] == benchmark["owner"]:
        return APPROVED
    if initiator["id"] == benchmark["owner"]:
        return PENDING  # the subject's owner approves a request started by the benchmark owner
    mode = benchmark.get(mode_field, NEVER)
    if mode == ALWAYS:
        return APPROVED
    if mode == ALLOWLIST and subject_owner["email"] in (benchmark.get(allow_list_field) or []):
        return APPROVED
    return PENDING


def check_dataset_association_create(dataset: dict, benchmark: dict):
    """Associations only with an APPROVED benchmark, an OPERATION dataset and the same prep container."""
    if benchmark["approval_status"] != APPROVED:
        raise Invalid(MSG_BENCHMARK_NOT_APPROVED)
    if dataset["state"] != OPERATION:
        raise Invalid(MSG_DATASET_NOT_OPERATIONAL)
    if dataset["data_preparation_mlcube"] != benchmark["data_preparation_mlcube"]:
        raise Invalid(MSG_PREP_MISMATCH)


def check_model_association_create(model: dict, benchmark: dict):
    if benchmark["approval_status"] != APPROVED:
        raise Invalid(MSG_BENCHMARK_NOT_APPROVED)
    if model["state"] != OPERATION:
        raise Invalid(MSG_MODEL_NOT_OPERATIONAL)


def check_association_decision(user: dict, latest: dict, new_status: str):
    """PUT approval_status on the latest row: only a PENDING row, never back to PENDING, never self-approve."""
    if new_status == PENDING:
        raise Invalid({"approval_status": [MSG_SET_PENDING]})
    if latest["approval_status"] != PENDING:
        raise Invalid(MSG_NOT_PENDING)
    if new_status == APPROVED and latest["initiated_by"] == user["id"]:
        raise Invalid(MSG_SELF_APPROVE)


def not_pending_error() -> Invalid:
    return Invalid(MSG_NOT_PENDING)


def approved_at_for(status: str, stamp: str) -> str | None:
    return None if status == PENDING else stamp


# ---------------------------------------------------------------- results


def check_result_create(benchmark: dict, model_id: int, latest_dataset: dict | None, latest_model: dict | None):
    """The reference model may run before approval; any other model needs both latest associations APPROVED."""
    if model_id == benchmark["reference_model"]:
        return
    if not latest_model or latest_model["approval_status"] != APPROVED:
        raise Invalid(MSG_MODEL_ASSOC)
    if not latest_dataset or latest_dataset["approval_status"] != APPROVED:
        raise Invalid(MSG_DATASET_ASSOC)


def finalized_error() -> Invalid:
    return Invalid(MSG_FINALIZED)


RESULT_READ_ONLY_ON_UPDATE = ("benchmark", "model", "dataset")


def check_result_update(current: dict, body: dict, stamp: str) -> dict:
    """Finalized results are immutable; a body carrying `results` finalizes; the triplet never changes: MedPerf's
    detail serializer has it read-only, so a PUT naming it is not refused, the values are ignored."""
    if current["finalized"]:
        raise Invalid(MSG_FINALIZED)
    changes = {k: v for k, v in body.items() if k not in RESULT_READ_ONLY_ON_UPDATE}
    if "results" in body:
        changes["finalized"] = True
        changes["finalized_at"] = stamp
    return changes


# ---------------------------------------------------------------- the database's backstops

MSG_CONCURRENT_CHANGE = "The request conflicted with a concurrent change of the same record; send it again."
_CONSTRAINT_ERRORS = {
    "one_pending_association": {NON_FIELD: [MSG_ONLY_IF_REJECTED]},
    "operational_generated_uid": {NON_FIELD: [MSG_DUPLICATE_UID]},
    "mlcube_name": {"name": ["mlcube with this name already exists."]},
    "model_name": {"name": ["model with this name already exists."]},
    "benchmark_name": {"name": ["benchmark with this name already exists."]},
}


def constraint_error(rule: str | None) -> Invalid:
    """The 400 MedPerf answers for a rule whose unique index stopped a write (store.broken_rule names it); a
    violation no rule names is a conflict to retry, still a 400 in the same shape, never a 500."""
    return Invalid(_CONSTRAINT_ERRORS.get(rule, {NON_FIELD: [MSG_CONCURRENT_CHANGE]}))
