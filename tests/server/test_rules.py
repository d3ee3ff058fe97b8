"""server/rules.py as tables: every actor against every permission, and the state machines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from server import rules
from server.errors import Forbidden, Invalid

ADMIN = {"id": 1, "is_admin": True, "email": "testadmin@example.com"}
BO = {"id": 2, "is_admin": False, "email": "testbo@example.com"}
MO = {"id": 3, "is_admin": False, "email": "testmo@example.com"}
DO = {"id": 4, "is_admin": False, "email": "testdo@example.com"}
DO2 = {"id": 5, "is_admin": False, "email": "testdo2@example.com"}
ACTORS = {"anonymous": None, "admin": ADMIN, "bo": BO, "mo": MO, "do": DO, "do2": DO2}

BENCHMARK = {"id": 1, "owner": BO["id"], "approval_status": "APPROVED", "reference_model": 1,
             "data_preparation_mlcube": 1, "dataset_auto_approval_mode": "NEVER",
             "dataset_auto_approval_allow_list": [], "model_auto_approval_mode": "NEVER",
             "model_auto_approval_allow_list": []}
DATASET = {"id": 1, "owner": DO["id"], "state": "OPERATION", "data_preparation_mlcube": 1}
MODEL = {"id": 2, "owner": MO["id"], "state": "OPERATION"}
PREP = {"id": 1, "owner": BO["id"]}
RESULT = {"id": 1, "owner": DO["id"], "dataset": 1, "benchmark": 1, "model": 2, "finalized": False}

# permission -> (call for an actor, actors allowed)
PERMISSIONS = {
    "edit own dataset": (lambda u: rules.can_edit_owned(u, DATASET), {"admin", "do"}),
    "edit benchmark": (lambda u: rules.can_edit_owned(u, BENCHMARK), {"admin", "bo"}),
    "full dataset (report)": (lambda u: rules.sees_full_dataset(u, DATASET, PREP), {"admin", "do", "bo"}),
    "full benchmark (allow lists)": (lambda u: rules.sees_full_benchmark(u, BENCHMARK), {"admin", "bo"}),
    "benchmark models, nobody approved": (lambda u: rules.can_list_benchmark_models(u, BENCHMARK, False),
                                          {"admin", "bo"}),
    "benchmark results": (lambda u: rules.can_list_benchmark_results(u, BENCHMARK), {"admin", "bo"}),
    "request dataset association": (lambda u: rules.can_request_dataset_association(u, DATASET, BENCHMARK),
                                    {"admin", "do", "bo"}),
    "see dataset association": (lambda u: rules.can_see_dataset_association(u, DATASET, BENCHMARK),
                                {"admin", "do", "bo"}),
    "list a dataset's associations": (lambda u: rules.can_list_dataset_associations(u, DATASET), {"admin", "do"}),
    "request model association": (lambda u: rules.can_request_model_association(u, MODEL, BENCHMARK),
                                  {"admin", "mo", "bo"}),
    "set model priority": (lambda u: rules.can_set_priority(u, BENCHMARK), {"admin", "bo"}),
    "create result": (lambda u: rules.can_create_result(u, DATASET), {"admin", "do"}),
    "view result": (lambda u: rules.can_view_result(u, RESULT, DATASET, BENCHMARK), {"admin", "do", "bo"}),
    "edit result": (lambda u: rules.can_edit_result(u, RESULT, DATASET), {"admin", "do"}),
    "list all results": (lambda u: rules.can_list_all_results(u), {"admin"}),
    "change benchmark approval": (lambda u: rules.can_change_benchmark_approval(u), {"admin"}),
    "view user 4 (prep owner flag false)": (lambda u: rules.can_view_user(u, DO["id"], False), {"admin", "do"}),
}


@pytest.mark.parametrize("permission", sorted(PERMISSIONS))
@pytest.mark.parametrize("actor", sorted(ACTORS))
def test_permission_table(permission, actor):
    check, allowed = PERMISSIONS[permission]
    assert check(ACTORS[actor]) is (actor in allowed)


def test_data_owner_with_approved_association_may_list_benchmark_models():
    assert rules.can_list_benchmark_models(DO, BENCHMARK, True)
    assert rules.can_list_benchmark_datasets(MO, BENCHMARK, True)
    assert not rules.can_list_benchmark_datasets(MO, BENCHMARK, False)


def test_prep_owner_may_view_the_data_owner():
    assert rules.can_view_user(BO, DO["id"], True)


# ---------------------------------------------------------------- association creation


def create(initiator, requested="PENDING", latest=None, owner=DO, **bench):
    return rules.association_status_on_create(
        initiator=initiator, requested=requested, latest={"approval_status": latest} if latest else None,
        subject_owner=owner, benchmark={**BENCHMARK, **bench}, mode_field="dataset_auto_approval_mode",
        allow_list_field="dataset_auto_approval_allow_list")


@pytest.mark.parametrize(("initiator", "requested", "latest", "bench", "owner", "expected"), [
    (DO, "PENDING", None, {}, DO, "PENDING"),                          # NEVER: waits for the benchmark owner
    (DO, "PENDING", "REJECTED", {}, DO, "PENDING"),                    # a new request after a rejection
    (DO, "PENDING", None, {"dataset_auto_approval_mode": "ALWAYS"}, DO, "APPROVED"),
    (DO, "PENDING", None, {"dataset_auto_approval_mode": "ALLOWLIST",
                           "dataset_auto_approval_allow_list": ["testdo@example.com"]}, DO, "APPROVED"),
    (DO2, "PENDING", None, {"dataset_auto_approval_mode": "ALLOWLIST",
                            "dataset_auto_approval_allow_list": ["testdo@example.com"]}, DO2, "PENDING"),
    (BO, "PENDING", None, {"dataset_auto_approval_mode": "ALWAYS"}, DO, "PENDING"),  # never when bo starts it
    (BO, "PENDING", None, {}, BO, "APPROVED"),                          # dataset owner == benchmark owner
    (ADMIN, "PENDING", None, {}, DO, "PENDING"),
    (BO, "REJECTED", "APPROVED", {}, DO, "REJECTED"),                   # revoke an approved association
])
def test_association_status_on_create(initiator, requested, latest, bench, owner, expected):
    assert create(initiator, requested, latest, owner, **bench) == expected


@pytest.mark.parametrize(("requested", "latest", "message"), [
    ("PENDING", "PENDING", rules.MSG_ONLY_IF_REJECTED),
    ("PENDING", "APPROVED", rules.MSG_ONLY_IF_REJECTED),
    ("APPROVED", None, rules.MSG_NO_DIRECT_APPROVED),
    ("APPROVED", "REJECTED", rules.MSG_NO_DIRECT_APPROVED),
    ("REJECTED", None, rules.MSG_REJECT_ONLY_APPROVED),
    ("REJECTED", "PENDING", rules.MSG_REJECT_ONLY_APPROVED),
])
def test_association_creation_refused(requested, latest, message):
    with pytest.raises(Invalid) as e:
        create(DO, requested, latest)
    assert message in str(e.value.body)


@pytest.mark.parametrize(("benchmark", "dataset", "message"), [
    ({"approval_status": "PENDING"}, {}, rules.MSG_BENCHMARK_NOT_APPROVED),
    ({}, {"state": "DEVELOPMENT"}, rules.MSG_DATASET_NOT_OPERATIONAL),
    ({}, {"data_preparation_mlcube": 9}, rules.MSG_PREP_MISMATCH),
])
def test_association_needs_approved_benchmark_operational_dataset_same_prep(benchmark, dataset, message):
    with pytest.raises(Invalid) as e:
        rules.check_dataset_association_create({**DATASET, **dataset}, {**BENCHMARK, **benchmark})
    assert e.value.body == {"non_field_errors": [message]}


@pytest.mark.parametrize(("actor", "latest", "new", "ok"), [
    (BO, {"approval_status": "PENDING", "initiated_by": DO["id"]}, "APPROVED", True),
    (BO, {"approval_status": "PENDING", "initiated_by": DO["id"]}, "REJECTED", True),
    (DO, {"approval_status": "PENDING", "initiated_by": DO["id"]}, "APPROVED", False),  # never the requester
    (DO, {"approval_status": "PENDING", "initiated_by": DO["id"]}, "REJECTED", True),   # withdraw
    (DO, {"approval_status": "PENDING", "initiated_by": BO["id"]}, "APPROVED", True),
    (BO, {"approval_status": "APPROVED", "initiated_by": DO["id"]}, "APPROVED", False),  # not pending
    (BO, {"approval_status": "REJECTED", "initiated_by": DO["id"]}, "APPROVED", False),
    (BO, {"approval_status": "APPROVED", "initiated_by": DO["id"]}, "PENDING", False),
    (ADMIN, {"approval_status": "PENDING", "initiated_by": DO["id"]}, "PENDING", False),
])
def test_association_decision(actor, latest, new, ok):
    if ok:
        rules.check_association_decision(actor, latest, new)
    else:
        with pytest.raises(Invalid):
            rules.check_association_decision(actor, latest, new)


# ---------------------------------------------------------------- datasets, benchmarks, results


def test_dataset_development_to_operation_and_never_back():
    dev = {"state": "DEVELOPMENT", "generated_uid": "a", "is_valid": True, "user_metadata": {}, "name": "n"}
    assert rules.check_dataset_update(dev, {"state": "OPERATION", "generated_uid": "b"}, False) == {
        "state": "OPERATION", "generated_uid": "b"}
    with pytest.raises(Invalid) as e:
        rules.check_dataset_update(dev, {"state": "OPERATION"}, True)
    assert e.value.body == {"non_field_errors": [rules.MSG_DUPLICATE_UID]}
    op = {**dev, "state": "OPERATION"}
    with pytest.raises(Invalid):
        rules.check_dataset_update(op, {"state": "DEVELOPMENT"}, False)
    with pytest.raises(Invalid) as e:
        rules.check_dataset_update(op, {"name": "other"}, False)
    assert e.value.body == {"non_field_errors": [rules.MSG_OPERATION_LOCKED]}
    # re-sending current values is accepted; is_valid and user_metadata stay editable
    assert rules.check_dataset_update(op, {"name": "n", "state": "OPERATION", "user_metadata": {"k": 1}}, True) == {
        "user_metadata": {"k": 1}}


def test_benchmark_approval_status_in_body_is_admin_only_even_unchanged():
    current = {**BENCHMARK, "state": "OPERATION"}
    with pytest.raises(Forbidden):
        rules.check_benchmark_update(BO, current, {"approval_status": "APPROVED"}, ["OPERATION"] * 3)
    assert rules.check_benchmark_update(ADMIN, current, {"approval_status": "APPROVED"}, ["OPERATION"] * 3) == {}


def test_benchmark_cannot_be_operational_with_development_components():
    with pytest.raises(Invalid):
        rules.check_benchmark_update(BO, {**BENCHMARK, "state": "DEVELOPMENT"}, {"state": "OPERATION"},
                                     ["OPERATION", "DEVELOPMENT", "OPERATION"])


def test_one_pending_benchmark_per_owner_unless_auto_approved():
    assert rules.initial_benchmark_approval("a@x", (), 0) == "PENDING"
    assert rules.initial_benchmark_approval("a@x", ("a@x",), 3) == "APPROVED"
    with pytest.raises(Invalid):
        rules.initial_benchmark_approval("a@x", (), 1)


@pytest.mark.parametrize(("model", "dataset_status", "model_status", "ok"), [
    (1, None, None, True),                     # the reference model runs before any approval
    (2, "APPROVED", "APPROVED", True),
    (2, "PENDING", "APPROVED", False),
    (2, "APPROVED", "REJECTED", False),
    (2, None, "APPROVED", False),
    (2, "APPROVED", None, False),
])
def test_result_creation(model, dataset_status, model_status, ok):
    latest_ds = {"approval_status": dataset_status} if dataset_status else None
    latest_m = {"approval_status": model_status} if model_status else None
    if ok:
        rules.check_result_create(BENCHMARK, model, latest_ds, latest_m)
    else:
        with pytest.raises(Invalid):
            rules.check_result_create(BENCHMARK, model, latest_ds, latest_m)


def test_result_put_with_results_finalizes_and_finalized_is_immutable():
    changes = rules.check_result_update(RESULT, {"results": {"AUC": 1}, "metadata": {"partial": False}}, "T")
    assert changes == {"results": {"AUC": 1}, "metadata": {"partial": False}, "finalized": True, "finalized_at": "T"}
    assert rules.check_result_update(RESULT, {"model_report": {"execution_status": "started"}}, "T") == {
        "model_report": {"execution_status": "started"}}
    for body in ({"model_report": {"execution_status": "finished"}}, {}, {"results": {}}):
        with pytest.raises(Invalid) as e:
            rules.check_result_update({**RESULT, "finalized": True}, body, "T")
        assert e.value.body == {"non_field_errors": [rules.MSG_FINALIZED]}
    # the triplet is read-only in MedPerf's detail serializer: named in a PUT, it is ignored, not refused
    assert rules.check_result_update(RESULT, {"model": 9, "dataset": 9, "model_report": {}}, "T") == {
        "model_report": {}}


def test_rules_module_is_pure():
    tree = ast.parse(Path(rules.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "server.errors"}, imported


@pytest.mark.parametrize("rule, body", [
    ("one_pending_association", {"non_field_errors": [rules.MSG_ONLY_IF_REJECTED]}),
    ("operational_generated_uid", {"non_field_errors": [rules.MSG_DUPLICATE_UID]}),
    ("benchmark_name", {"name": ["benchmark with this name already exists."]}),
    (None, {"non_field_errors": [rules.MSG_CONCURRENT_CHANGE]}),
])
def test_a_unique_index_that_stopped_a_write_is_the_rules_400(rule, body):
    error = rules.constraint_error(rule)
    assert (error.status, error.body) == (400, body)
