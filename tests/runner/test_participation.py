"""Benchmark participation through the CLI in-process, with the fake registry and runner: associate, the
approval gate, model runs, submit, and the status / results / association commands."""

from __future__ import annotations

import json

import yaml

from runner import privacy
from tests.runner.conftest import BO_TOKEN
from tests.runner.conftest import participating as _participating
from tests.runner.fakes import model_record


def _bodies(ws, method=None, prefix=""):
    return [(m, p, b) for m, p, b in ws.api.sent(method) if p.startswith(prefix)]


def _statuses(ws, result_id):
    out = []
    for _, _, b in _bodies(ws, "PUT", f"results/{result_id}/"):
        for k in ("model_report", "evaluation_report"):
            if k in b:
                out.append(f"{k.split('_')[0]} {b[k]['execution_status']}")
    return out


def _add_model(ws, mid, image, *, approved=True, priority=0):
    ws.api.world["models"][mid] = model_record(mid, f"model{mid}", 100 + mid, image)
    ws.api.world["model_assocs"].append({"model": mid, "benchmark": 1, "priority": priority,
                                         "approval_status": "APPROVED" if approved else "PENDING",
                                         "created_at": f"2026-11-22T00:00:{mid:02d}Z"})


def _table_rows(out: str) -> list[list[str]]:
    """The rows of the last summary table (after its header and rule)."""
    lines = out.split("Model runs of dataset")[-1].splitlines()[3:]
    return [ln.split() for ln in lines if ln.startswith("  ") and not ln.startswith("    ")]


def _ledger_matches_what_was_sent(ws):
    ledger = ws.state().ledger.entries()
    assert [(e["method"], e["path"], e["body"]) for e in ledger] == [(m, p, b) for m, p, b in ws.api.sent()]
    for e in ledger:  # and each body holds only the fields runner/privacy.py allows there
        privacy.check_body(e["method"], e["path"], e["body"])


def test_the_tutorial_second_half_gate_approve_run_submit_then_nothing(ws):
    _participating(ws)
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2
    assert "+ associate           runs model 1 (reference) + evaluator; sends: test_result (metrics)" in r.out
    assert "? await approval      benchmark owner must approve" in r.out
    assert "= run model 1         done by the association test (b1m1d?)" in r.out

    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 3, r.out + r.err
    assert "pending  mytestdata / benchmark chestxray: await approval" in r.out
    assert "waits for the benchmark owner to approve dataset mytestdata (1) in benchmark chestxray (requested " in r.out
    assert "apply --wait" in r.out
    # the compatibility test: the reference model and the evaluator, once, as result record b1m1d1
    assert ws.runner.tasks_run() == ["prepare", "sanity_check", "statistics", "infer", "evaluate"]
    (res,) = ws.api.world["results"].values()
    assert (res["name"], res["model"], res["finalized"]) == ("b1m1d1", 1, False)
    assert _statuses(ws, res["id"]) == ["model pending", "evaluation pending", "model started", "model finished",
                                        "evaluation started", "evaluation finished"]
    (row,) = ws.api.world["dataset_assocs"]
    assert row["approval_status"] == "PENDING"
    assert row["metadata"] == {"test_result": {"Accuracy": 0.75, "AUC": 0.8125}}
    assert set(_bodies(ws, "POST", "datasets/benchmarks/")[0][2]) == {"dataset", "benchmark", "approval_status",
                                                                      "metadata"}
    local = ws.state().result_dir(res["id"])
    assert (local / ".executed").exists() and not (local / ".partial").exists()
    assert yaml.safe_load((local / "results.yaml").read_text()) == {"Accuracy": 0.75, "AUC": 0.8125}
    assert sorted(p.name for p in (local / "predictions").iterdir()) == ["img0.pred", "img1.pred", "img2.pred"]
    assert (local / "logs" / "model.log").exists() and (local / "logs" / "metrics_chestxray_metrics.log").exists()
    assert _bodies(ws, "PUT", "results/") and not any("results" in b for _, _, b in _bodies(ws, "PUT", "results/"))

    r = ws.run("apply", str(ws.manifest), "--yes")  # still pending: nothing is sent, exit 3 again
    before = len(ws.api.sent())
    assert r.code == 3 and len(ws.api.sent()) == before

    # the data owner cannot approve their own request, as on the real server
    r = ws.run("association", "approve", "--benchmark", "chestxray", "--dataset", "1", "--server",
               "http://registry.test:8000")
    assert r.code == 1 and "Same user cannot approve the association request" in r.err, r.err
    assert ws.api.world["dataset_assocs"][-1]["approval_status"] == "PENDING"
    # the benchmark owner approves it with the command
    r = ws.run("association", "approve", "--benchmark", "chestxray", "--dataset", "1", "--server",
               "http://registry.test:8000", token=BO_TOKEN)
    assert r.code == 0, r.err
    assert "association of dataset mytestdata (1) with benchmark chestxray (1): APPROVED" in r.out
    assert ws.api.sent()[-1] == ("PUT", "datasets/1/benchmarks/1/", {"approval_status": "APPROVED"})

    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert ws.runner.tasks_run()[5:] == ["infer", "evaluate"]  # model 2 only: the reference ran in the test
    assert [r_["model"] for r_ in ws.api.world["results"].values()] == [1, 2]
    assert all(r_["finalized"] for r_ in ws.api.world["results"].values())
    submits = [(p, b) for _, p, b in _bodies(ws, "PUT", "results/") if "results" in b]
    assert submits == [("results/2/", {"results": {"Accuracy": 0.75, "AUC": 0.8125}, "metadata": {"partial": False}}),
                       ("results/1/", {"results": {"Accuracy": 0.75, "AUC": 0.8125}, "metadata": {"partial": False}})]
    assert "Model runs of dataset mytestdata in benchmark chestxray:" in r.out
    assert [row[:4] for row in _table_rows(r.out)] == [["2", "2", "False", "False"], ["1", "1", "False", "True"]]
    assert "Total number of models: 2" in r.out and "1 were skipped (already executed)" in r.out
    assert "1 ran successfully, of which 0 have partial results" in r.out

    before = len(ws.api.sent())
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0 and len(ws.api.sent()) == before  # a third apply changes nothing
    assert "= submit" in r.out and "2 results submitted" in r.out
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 0 and "No changes." in r.out
    _ledger_matches_what_was_sent(ws)
    assert len(ws.runner.tasks_run()) == 7  # no container task ever ran twice


def test_a_model_added_later_is_run_and_submitted_alone(ws):
    _participating(ws)
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    tasks = len(ws.runner.tasks_run())
    _add_model(ws, 7, "medperf-apply/model7:latest", priority=3)
    sent = len(ws.api.sent())
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out
    assert "+ run model 7" in r.out and "= run model 2" in r.out
    assert ws.runner.tasks_run()[tasks:] == ["infer", "evaluate"]
    new = ws.api.sent()[sent:]
    assert [(m, p) for m, p, _ in new if m == "POST"] == [("POST", "results/")]
    assert [p for m, p, b in new if m == "PUT" and "results" in b] == ["results/3/"]
    assert ws.runner.runs[-2][1]["data_path"].parent == ws.state().dataset_dir(1)


def test_auto_approval_needs_no_wait_and_runs_every_model_in_one_apply(ws):
    _participating(ws)
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    r = ws.run("plan", str(ws.manifest))
    assert "approves requests automatically (policy ALWAYS)" in r.out
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert "approved at once (auto-approval)" in r.out
    assert "planning the benchmark's models" in r.out
    assert [res["model"] for res in ws.api.world["results"].values()] == [1, 2]
    assert all(res["finalized"] for res in ws.api.world["results"].values())
    assert ws.runner.tasks_run().count("infer") == 2
    assert "Recap:" in r.out and " 0 failed" in r.out
    _ledger_matches_what_was_sent(ws)


def test_wait_polls_with_backoff_until_the_owner_approves(ws):
    _participating(ws)
    ws.clock.on_sleep = lambda n: ws.api.approve(1) if n == 3 else None
    r = ws.run("apply", str(ws.manifest), "--yes", "--wait", "--timeout", "10m")
    assert r.code == 0, r.out + r.err
    assert ws.clock.sleeps == [5.0, 10.0, 20.0]
    assert "approved by the benchmark owner after waiting 35 s" in r.out
    (row,) = ws.api.world["dataset_assocs"]
    assert "waiting for the benchmark owner to approve dataset mytestdata (1) in benchmark chestxray (requested " \
           f"{row['created_at']}): polling every 5 s to 60 s, for at most 10.0 min" in r.out
    assert all(res["finalized"] for res in ws.api.world["results"].values())
    assert len(ws.api.world["results"]) == 2


def test_wait_gives_up_at_the_timeout_with_exit_3_and_caps_the_backoff(ws):
    _participating(ws)
    r = ws.run("apply", str(ws.manifest), "--yes", "--wait", "--timeout", "5m")
    assert r.code == 3
    assert ws.clock.sleeps == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 45.0]
    assert "still not approved after waiting 5.0 min" in r.out


def test_a_rejection_fails_at_once(ws):
    _participating(ws)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3
    ws.api.approve(1, status="REJECTED")
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1 and "REJECTED" in r.err and "talk to the benchmark owner" in r.err
    # while waiting, too
    ws.api.world["dataset_assocs"][-1]["approval_status"] = "PENDING"
    ws.clock.on_sleep = lambda n: ws.api.approve(1, status="REJECTED")
    r = ws.run("apply", str(ws.manifest), "--yes", "--wait")
    assert r.code == 1 and "REJECTED the association" in r.out and len(ws.clock.sleeps) == 1
    # once the owner agrees: a new request, on the data owner's explicit word only
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1 and "--request-again" in r.err
    r = ws.run("apply", str(ws.manifest), "--yes", "--request-again", "--target", "dataset/mytestdata/benchmark/chestxray")
    assert r.code == 3, r.out + r.err
    assert "requested again (--request-again)" in r.out
    assert [row["approval_status"] for row in ws.api.world["dataset_assocs"]] == ["REJECTED", "PENDING"]
    assert ws.runner.tasks_run().count("infer") == 1  # the compatibility test's run is reused (from cache)


def test_association_requested_is_satisfied_by_pending(ws):
    _participating(ws, **{"association: approved": "association: requested"})
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 0 and "association: requested does not wait for approval" in r.out


def test_a_failing_model_is_in_the_table_while_the_others_finish(ws):
    _participating(ws)
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    _add_model(ws, 6, "medperf-apply/broken:latest", priority=5)
    ws.runner.fail = {"medperf-apply/broken:latest:infer": 1}
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1, r.out
    table = r.out.split("Model runs of dataset mytestdata in benchmark chestxray:")[-1]
    assert [row[0] for row in _table_rows(r.out)] == ["6", "2", "1"]  # priority order, the reference last
    assert "model execution failed: infer of model6 exited with code 1" in table
    assert "1 failed" in table and "1 ran successfully" in table
    finalized = {res["model"]: res["finalized"] for res in ws.api.world["results"].values()}
    assert finalized == {1: True, 6: False, 2: True}
    rid = next(res["id"] for res in ws.api.world["results"].values() if res["model"] == 6)
    assert _statuses(ws, rid) == ["model pending", "evaluation pending", "model started", "model failed"]
    # the failed model is tried again, with the same record, on the next apply
    ws.runner.fail = {}
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0 and f"result record {rid} exists but was not run here" in r.out
    assert ws.api.world["results"][rid]["finalized"] is True


def test_ignore_model_errors_gives_a_partial_result(ws):
    _participating(ws, **{"ignore_model_errors: false": "ignore_model_errors: true"})
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    ws.runner.fail = {"medperf-apply/chestxray-linear:latest:infer": 1}
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out
    res2 = next(res for res in ws.api.world["results"].values() if res["model"] == 2)
    assert res2["metadata"] == {"partial": True} and res2["finalized"]
    assert (ws.state().result_dir(res2["id"]) / ".partial").exists()
    assert _statuses(ws, res2["id"]) == ["model pending", "evaluation pending", "model started", "model failed",
                                         "evaluation started", "evaluation finished"]
    assert "of which 1 have partial results" in r.out
    # an evaluation failure is a failure even then
    ws2_fail = {"medperf-apply/chestxray-metrics:latest:evaluate": 2}
    _add_model(ws, 8, "medperf-apply/model8:latest")
    ws.runner.fail = ws2_fail
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1 and "evaluation failed: evaluate of chestxray_metrics exited with code 2" in r.out


def test_results_computed_stops_before_submitting_and_none_runs_nothing(ws):
    _participating(ws, **{"results: submitted": "results: computed"})
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out
    assert len(ws.api.world["results"]) == 2 and not any(r_["finalized"] for r_ in ws.api.world["results"].values())
    assert not any("results" in b for _, _, b in _bodies(ws, "PUT", "results/"))
    ws.manifest.write_text(ws.manifest.read_text().replace("results: computed", "results: none"))
    assert ws.run("plan", str(ws.manifest)).code == 0


def test_missing_results_consent_in_ci_waits_at_the_gate(ws):
    _participating(ws, **{"      results: true\n": ""})
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 3 and "set consent.results: true under dataset mytestdata" in r.out
    assert not any("results" in b for _, _, b in _bodies(ws, "PUT", "results/"))


def test_compatibility_results_consent_is_asked_in_a_terminal_showing_the_metrics(ws):
    from tests.runner.conftest import TTY

    _participating(ws, **{"      compatibility_results: true\n": ""})
    r = ws.run("apply", str(ws.manifest), stdin=TTY("y\nn\n"))
    assert r.code == 3
    assert '"test_result": {' in r.err and '"AUC": 0.8125' in r.err
    assert ws.api.world["dataset_assocs"] == []
    r = ws.run("apply", str(ws.manifest), stdin=TTY("y\ny\n"))
    assert r.code == 3 and len(ws.api.world["dataset_assocs"]) == 1
    assert ws.runner.tasks_run().count("infer") == 1  # the test's run was reused (from cache)


def test_parallel_runs_every_model_and_keeps_plan_order(ws):
    _participating(ws)
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    for mid in (11, 12, 13):
        _add_model(ws, mid, f"medperf-apply/model{mid}:latest", priority=mid)
    r = ws.run("apply", str(ws.manifest), "--yes", "--parallel", "3")
    assert r.code == 0, r.out
    assert [row[0] for row in _table_rows(r.out)] == ["13", "12", "11", "2", "1"]
    assert ws.runner.tasks_run().count("infer") == 5
    assert all(res["finalized"] for res in ws.api.world["results"].values())


def test_a_result_post_that_landed_is_not_sent_twice(ws):
    _participating(ws, **{"results: submitted": "results: none"})
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    assert len(ws.api.world["results"]) == 1  # the compatibility test's record only
    ws.manifest.write_text(ws.manifest.read_text().replace("results: none", "results: submitted"))
    ws.api.uncertain_posts, ws.api.uncertain_lands = 1, True  # model 2's POST lands, its answer is lost
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out
    assert len(ws.api.world["results"]) == 2 and len(_bodies(ws, "POST", "results/")) == 2


def test_status_and_results_commands(ws):
    _participating(ws)
    r = ws.run("status", str(ws.manifest))
    assert r.code == 0 and "dataset mytestdata: not registered" in r.out
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3
    r = ws.run("status", str(ws.manifest))
    assert r.code == 0
    assert "dataset mytestdata (id 1): operational" in r.out
    assert "benchmark chestxray (1): association PENDING (requested " in r.out
    assert "model 1 (reference)   computed (result 1)" in r.out
    ws.api.approve(1)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    r = ws.run("status", str(ws.manifest), "--output", "json")
    doc = json.loads(r.out)
    (b,) = doc["datasets"][0]["benchmarks"]
    assert b["association"] == "APPROVED"
    assert [(m["model"], m["result"], m["result_id"]) for m in b["models"]] == [(2, "submitted", 2),
                                                                                (1, "submitted", 1)]
    r = ws.run("results", str(ws.manifest))
    assert r.code == 0 and "b1m2d1" in r.out and "0.8125" in r.out and "Accuracy" in r.out
    r = ws.run("results", str(ws.manifest), "--format", "json", "--benchmark", "chestxray")
    rows = json.loads(r.out)["results"]
    assert [(x["id"], x["name"], x["results"]["AUC"], x["finalized"]) for x in rows] == [
        (1, "b1m1d1", 0.8125, True), (2, "b1m2d1", 0.8125, True)]
    r = ws.run("results", str(ws.manifest), "--format", "yaml")
    assert yaml.safe_load(r.out)[0]["metadata"] == {"partial": False}
    r = ws.run("results", str(ws.manifest), "--benchmark", "nope")
    assert r.code == 64 and "none of the manifest's benchmarks" in r.err


def test_association_command_errors_are_clear(ws):
    _participating(ws)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3
    ws.api.approve(1)
    sent = len(ws.api.sent())
    r = ws.run("association", "approve", "-b", "1", "-d", "1", "--server", "http://registry.test:8000")
    assert r.code == 0 and "already APPROVED" in r.out and len(ws.api.sent()) == sent  # idempotent: a re-run passes
    r = ws.run("association", "reject", "-b", "nope", "-d", "1", "--server", "http://registry.test:8000")
    assert r.code == 1 and "no benchmark 'nope'" in r.err
    ws.environ.pop("MEDPERF_SERVER", None)
    r = ws.run("association", "approve", "-b", "1", "-d", "1")
    assert r.code == 64 and "--server" in r.err
    r = ws.run("association", "approve", "-b", "1")
    assert r.code == 64


def test_prep_container_mismatch_is_a_clear_error(ws):
    _participating(ws, **{"prepare_with: {benchmark: chestxray}": "prepare_with: {container: other_prep}"})
    other = dict(ws.api.world["mlcubes"][2], id=9, name="other_prep")
    ws.api.world["mlcubes"][9] = other
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1 and "wasn't prepared for this benchmark" in r.err


def test_no_op_plan_makes_the_same_few_requests_for_1_or_100_models(ws):
    _participating(ws)
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0

    def count():
        before = ws.api.request_count
        assert ws.run("plan", str(ws.manifest)).code == 0
        return ws.api.request_count - before

    one = count()
    for mid in range(20, 119):
        _add_model(ws, mid, f"medperf-apply/m{mid}:latest")
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    assert sum(1 for res in ws.api.world["results"].values() if res["finalized"]) == 101
    assert one == count() == 6 <= 8


def test_an_association_post_that_landed_is_not_sent_twice_and_one_that_did_not_is(ws):
    _participating(ws)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3
    ws.api.world["dataset_assocs"].clear()  # as if never requested: the plan requests it again
    ws.api.uncertain_posts, ws.api.uncertain_lands = 1, True
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 3, r.out
    assert len(ws.api.world["dataset_assocs"]) == 1 and len(_bodies(ws, "POST", "datasets/benchmarks/")) == 2
    ws.api.world["dataset_assocs"].clear()
    ws.api.uncertain_posts, ws.api.uncertain_lands = 1, False
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 3, r.out
    assert len(ws.api.world["dataset_assocs"]) == 1 and len(_bodies(ws, "POST", "datasets/benchmarks/")) == 4
    assert ws.runner.tasks_run().count("infer") == 1  # the compatibility test ran once (then from cache)


def test_ctrl_c_during_a_model_run_exits_130_and_resumes_with_the_same_record(ws):
    _participating(ws)
    ws.runner.interrupt = "infer"
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 130
    (res,) = ws.api.world["results"].values()
    assert _statuses(ws, res["id"]) == ["model pending", "evaluation pending", "model started", "model interrupted"]
    assert ws.state().journal.unfinished() == []
    ws.runner.interrupt = None
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 3, r.out
    assert "reuses" not in r.out and len(ws.api.world["results"]) == 1  # the same record, run again
    assert (ws.state().result_dir(res["id"]) / ".executed").exists()


def test_wait_is_for_apply_only(ws):
    r = ws.run("plan", str(ws.manifest), "--wait")
    assert r.code == 64


def test_association_by_dataset_name_and_json_output(ws):
    _participating(ws)
    r = ws.run("apply", str(ws.manifest), "--yes", "--output", "json")
    assert r.code == 3
    doc = json.loads(r.out)
    gate = next(s for s in doc["steps"] if s["action"] == "await_approval")
    assert gate["result"]["outcome"] == "pending" and "requested" in gate["result"]["message"]
    ref_run = next(s for s in doc["steps"] if s["action"] == "run_model")
    assert ref_run["result"]["run"] == {"dataset": "mytestdata", "benchmark": "chestxray", "model": 1,
                                        "result_id": 1, "partial": False, "from_cache": True, "error": ""}
    ws.environ["MEDPERF_SERVER"] = "http://registry.test:8000"
    r = ws.run("association", "approve", "--benchmark", "chestxray", "--dataset", "mytestdata", "--output", "json",
               token=BO_TOKEN)
    assert r.code == 0, r.err
    assert json.loads(r.out)["approval_status"] == "APPROVED"
    r = ws.run("association", "reject", "-b", "chestxray", "-d", "nosuchdata", token=BO_TOKEN)
    assert r.code == 1 and "no dataset named 'nosuchdata' has asked to join benchmark 1" in r.err


def test_records_of_the_wrong_shape_are_the_servers_error_not_a_crash(ws):
    _participating(ws)
    real_list = ws.api.list

    def odd(path):
        return [{"id": "seven", "benchmark": 1}] if path == "me/results/" else real_list(path)

    ws.api.list = odd
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1 and "internal error" not in r.err
    assert "the server's answer to GET /me/results/ does not hold MedPerf records" in r.err
    assert "is this a MedPerf v0 server?" in r.err
