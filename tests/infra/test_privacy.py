"""The privacy allowlist accepts exactly the bodies of reference 3.3 and refuses anything else."""

from __future__ import annotations

import pytest

from runner.errors import PrivacyViolation
from runner.privacy import check_body, describe, normalize

H1 = "a" * 64
H2 = "0123456789abcdef" * 4

REGISTER = {
    "name": "mytestdata", "description": "A tutorial dataset", "location": "My machine",
    "input_data_hash": H1, "generated_uid": H1, "data_preparation_mlcube": 2, "split_seed": 0,
    "submitted_as_prepared": False, "for_test": False, "generated_metadata": {}, "user_metadata": {},
}
SET_OPERATIONAL = {"input_data_hash": H1, "generated_uid": H2, "state": "OPERATION",
                   "generated_metadata": {"num_cases": 5, "labels_count": {"atelectasis": 2, "effusion": 3}}}
REPORT = {"report": {"execution_status": "running", "progress": {"Stage 1": "40.0%", "Stage 3": "60.0%"}}}
ASSOCIATE = {"dataset": 1, "benchmark": 1, "approval_status": "PENDING",
             "metadata": {"test_result": {"Accuracy": 0.5, "AUC": 0.61}}}
CREATE_RESULT = {"name": "b1m2d1", "benchmark": 1, "model": 2, "dataset": 1, "results": {}, "metadata": {},
                 "user_metadata": {}, "model_report": {}, "evaluation_report": {}}
SUBMIT = {"results": {"Accuracy": 0.5, "AUC": 0.61}, "metadata": {"partial": False}}

ACCEPTED = [
    ("POST", "datasets/", REGISTER),
    ("PUT", "datasets/7/", SET_OPERATIONAL),
    ("PUT", "datasets/7/", REPORT),
    ("PUT", "datasets/7/", {"report": {"execution_status": "started", "progress": {}}}),
    ("POST", "datasets/benchmarks/", ASSOCIATE),
    ("PUT", "datasets/7/benchmarks/1/", {"approval_status": "APPROVED"}),
    ("PUT", "datasets/7/benchmarks/1/", {"approval_status": "REJECTED"}),
    ("POST", "datasets/benchmarks/", {"dataset": 1, "benchmark": 1, "approval_status": "REJECTED", "metadata": {}}),
    ("POST", "results/", CREATE_RESULT),
    ("PUT", "results/12/", {"model_report": {"execution_status": "started"}}),
    ("PUT", "results/12/", {"evaluation_report": {"execution_status": "finished"}}),
    ("PUT", "results/12/", SUBMIT),
    # the same endpoints written as full paths
    ("POST", "/api/v0/datasets/", REGISTER),
    ("PUT", "http://127.0.0.1:8000/api/v0/results/12/", SUBMIT),
    ("PUT", "results/12", SUBMIT),
]


@pytest.mark.parametrize("method, path, body", ACCEPTED)
def test_the_bodies_of_the_reference_are_accepted(method, path, body):
    check_body(method, path, body)


def refused(method, path, body, *words):
    with pytest.raises(PrivacyViolation) as e:
        check_body(method, path, body)
    text = str(e.value)
    assert "nothing was sent" in text
    for w in words:
        assert w in text, text
    return text


@pytest.mark.parametrize("method, path, body, words", [
    # an extra key anywhere
    ("POST", "datasets/", {**REGISTER, "raw_path": "x"}, ["POST /datasets/", "raw_path"]),
    ("POST", "datasets/", {**REGISTER, "generated_metadata": {"num_cases": 5}}, ["generated_metadata", "empty"]),
    ("POST", "datasets/", {**REGISTER, "user_metadata": {"k": "v"}}, ["user_metadata"]),
    ("PUT", "datasets/7/", {**SET_OPERATIONAL, "report": {"execution_status": "finished"}}, ["report"]),
    ("PUT", "datasets/7/", {"report": {"execution_status": "running", "full_report": {"case1": "ok"}}},
     ["report.full_report"]),
    ("POST", "datasets/benchmarks/", {**ASSOCIATE, "metadata": {"test_result": {}, "predictions": [1]}},
     ["metadata.predictions"]),
    ("POST", "datasets/benchmarks/", {**ASSOCIATE, "approval_status": "APPROVED"}, ["approval_status"]),
    # a revocation carries nothing but the pair and REJECTED
    ("POST", "datasets/benchmarks/", {"dataset": 1, "benchmark": 1, "approval_status": "REJECTED",
                                      "metadata": {"note": "x"}}, ["metadata"]),
    ("PUT", "datasets/7/benchmarks/1/", {"approval_status": "APPROVED", "metadata": {}}, ["metadata"]),
    ("POST", "results/", {**CREATE_RESULT, "results": {"AUC": 1}}, ["results"]),
    ("PUT", "results/12/", {**SUBMIT, "metadata": {"partial": False, "log": "x"}}, ["metadata.log"]),
    ("PUT", "results/12/", {"model_report": {"execution_status": "started"}, "results": {}}, ["PUT /results/12/"]),
    ("PUT", "results/12/", {"model_report": {"execution_status": "started", "last_lines": "oops"}},
     ["model_report.last_lines"]),
    # wrong types smuggle structure into scalar fields
    ("POST", "datasets/", {**REGISTER, "name": {"rows": [1, 2]}}, ["name"]),
    ("POST", "datasets/", {**REGISTER, "input_data_hash": "not-a-hash"}, ["input_data_hash"]),
    ("POST", "datasets/", {**REGISTER, "data_preparation_mlcube": "2"}, ["data_preparation_mlcube"]),
    # unknown endpoints and methods
    ("POST", "datasets/7/files/", {"name": "x"}, ["POST /datasets/7/files/"]),
    ("PUT", "benchmarks/1/", {"name": "x"}, ["PUT /benchmarks/1/"]),
    ("DELETE", "datasets/7/", {}, ["DELETE /datasets/7/"]),
    ("POST", "datasets/7/", REGISTER, ["POST /datasets/7/"]),
])
def test_anything_else_is_refused(method, path, body, words):
    refused(method, path, body, *words)


@pytest.mark.parametrize("value", [
    "/home/alice/medperf_tutorial/sample_raw_data/images",
    "~/data/images",
    "~alice/data",
    "C:\\Users\\alice\\data",
    "file:///srv/data",
    "scans copied from /mnt/pacs/export",
    "/data",
])
def test_local_paths_are_refused_in_any_value(value):
    refused("POST", "datasets/", {**REGISTER, "description": value}, "description", "local path")
    refused("PUT", "datasets/7/", {**SET_OPERATIONAL, "generated_metadata": {"source": {"dir": [value]}}},
            "generated_metadata.source.dir[0]")
    refused("PUT", "results/12/", {**SUBMIT, "results": {value: 0.5}}, "local path")


@pytest.mark.parametrize("value", ["A tutorial dataset", "N/A", "50/50 split", "https://example.org/a/b",
                                   "AUC/Accuracy", "Stage 1/3"])
def test_ordinary_text_is_not_mistaken_for_a_path(value):
    check_body("POST", "datasets/", {**REGISTER, "description": value})


def test_describe_lists_what_each_step_sends():
    assert describe("POST", "datasets/") == tuple(REGISTER)
    assert describe("PUT", "datasets/7/", "set operational") == (
        "input_data_hash", "generated_uid", "generated_metadata", "state")
    assert describe("POST", "datasets/benchmarks/") == ("dataset", "benchmark", "approval_status", "metadata")
    assert describe("PUT", "results/12/", "result submission") == ("results", "metadata")
    assert "report" in describe("PUT", "datasets/7/")
    with pytest.raises(PrivacyViolation):
        describe("PATCH", "datasets/7/")
    with pytest.raises(PrivacyViolation) as e:
        describe("PUT", "datasets/7/", "set operationel")
    assert "set operational" in str(e.value)


def test_normalize():
    assert normalize("datasets") == "datasets/"
    assert normalize("/api/v0/datasets/7/?x=1") == "datasets/7/"
    assert normalize("http://h:1/api/v0/results/") == "results/"


def test_not_json_data_is_refused():
    refused("PUT", "results/12/", {**SUBMIT, "results": {"AUC": b"\x00bytes"}}, "bytes")
