"""The CLI in-process, with the fake registry and runner: stdout, stderr and exit codes asserted."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from runner.state import StateDir
from tests.runner.conftest import TOKEN, TTY

GOLDEN = Path(__file__).parents[1] / "cases" / "plan" / "tutorial-plan.txt"
TWO_DATASETS = """
  - name: olddata
    data_path: raw/images
    labels_path: raw/labels
    prepare_with: {benchmark: 1}
    consent: {statistics: true, compatibility_results: true, results: true}
    benchmarks:
      - benchmark: chestxray
  - name: newdata
    description: the second site
    data_path: raw2/images
    labels_path: raw2/labels
    prepare_with: {container: chestxray_prep}
"""


def independent_hash(*folders: Path) -> str:
    """MedPerf's folder hash computed here, without runner.hashing: sorted file SHA-256s, hashed in order."""
    digests = []
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for f in files:
                digests.append(hashlib.sha256((Path(dirpath) / f).read_bytes()).hexdigest())
    total = hashlib.sha256()
    for d in sorted(digests):
        total.update(d.encode())
    return total.hexdigest()


def test_plan_prints_the_golden_text_and_sends_nothing(ws):
    (ws.root / "raw2" / "images").mkdir(parents=True)
    (ws.root / "raw2" / "labels").mkdir(parents=True)
    (ws.root / "raw2" / "images" / "a.png").write_bytes(b"a")
    (ws.root / "raw2" / "labels" / "labels.csv").write_text("Image ID,Label\na,mass\n")
    ws.manifest.write_text(ws.manifest.read_text().split("  - name: mytestdata")[0] + TWO_DATASETS.lstrip("\n"))
    ws.api.add_dataset(id=4, name="olddata", state="OPERATION", input_data_hash=ws.raw_hash(), generated_uid="f" * 64)
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2, r.err
    assert r.err == ""
    assert r.out == GOLDEN.read_text().replace("MANIFEST:", f"{ws.manifest}:")
    assert ws.api.sent() == []
    assert "\x1b[" not in r.out


def test_new_dataset_to_operational_then_nothing_to_do(ws):
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2
    assert "+ register" in r.out and "Plan: 3 to do, 0 already done." in r.out
    assert ws.api.sent() == []

    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    lines = r.out.splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith(("changed", "ok", "failed"))] == ["changed"] * 3
    assert "Recap: 0 ok, 3 changed, 0 pending, 0 failed, 0 skipped" in r.out
    (ds,) = ws.api.world["datasets"].values()
    root = ws.state().dataset_dir(ds["id"])
    assert ds["state"] == "OPERATION"
    assert ds["input_data_hash"] == independent_hash(ws.images, ws.labels)
    assert ds["generated_uid"] == independent_hash(root / "data", root / "labels")
    assert ds["generated_metadata"] == yaml.safe_load((root / "statistics.yaml").read_text())
    assert (root / ".ready").exists()
    assert yaml.safe_load((root / "raw.yaml").read_text()) == {"data_path": str(ws.images),
                                                                 "labels_path": str(ws.labels)}
    # what was sent, in order: the registration, status reports around prepare, the set-operational PUT
    sent = [(m, p, sorted(b)) for m, p, b in ws.api.sent()]
    assert sent == [("POST", "datasets/", sorted(["name", "description", "location", "input_data_hash",
                                                  "generated_uid", "data_preparation_mlcube", "split_seed",
                                                  "submitted_as_prepared", "for_test", "generated_metadata",
                                                  "user_metadata"])),
                    ("PUT", f"datasets/{ds['id']}/", ["report"]), ("PUT", f"datasets/{ds['id']}/", ["report"]),
                    ("PUT", f"datasets/{ds['id']}/", ["generated_metadata", "generated_uid", "input_data_hash",
                                                      "state"])]
    post_body = ws.api.sent("POST")[0][2]
    assert post_body["generated_uid"] == post_body["input_data_hash"]  # MedPerf: raw hash until operational
    assert [b["report"]["execution_status"] for m, p, b in ws.api.sent("PUT")[:2]] == ["started", "finished"]
    # every body is in the ledger; the journal has nothing unfinished; the token was never printed
    ledger = ws.state().ledger.entries()
    assert [(e["method"], e["path"]) for e in ledger] == [(m, p) for m, p, _ in ws.api.sent()]
    assert ws.state().journal.unfinished() == []
    assert TOKEN not in r.out + r.err

    before = len(ws.api.calls)
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0
    assert "Recap: 3 ok, 0 changed" in r.out
    assert ws.api.sent() == [c for c in ws.api.calls[:before] if c[0] != "GET"]
    assert ws.runner.tasks_run() == ["prepare", "sanity_check", "statistics"]

    r = ws.run("plan", str(ws.manifest))
    assert r.code == 0 and "No changes. Plan: 0 to do, 3 already done." in r.out


def test_no_op_plan_uses_few_requests(ws):
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    before = ws.api.request_count
    assert ws.run("plan", str(ws.manifest)).code == 0
    assert ws.api.request_count - before <= 8
    assert ws.api.request_count - before == 3  # me/datasets, the benchmark by name, its container


def test_plan_after_a_raw_file_changed_is_a_drift_error(ws):
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    old = ws.raw_hash()
    (ws.images / "img1.png").write_bytes(b"another image")
    new = ws.raw_hash()
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1
    assert old in r.err and new in r.err and "new name" in r.err
    assert r.out == ""


def test_json_output_is_only_json_on_stdout(ws):
    r = ws.run("plan", str(ws.manifest), "--output", "json")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["format_version"] == 2 and doc["kind"] == "plan" and doc["has_changes"] is True
    assert [s["action"] for s in doc["steps"]] == ["register", "prepare", "set_operational"]
    assert "+ register" in r.err  # the human plan goes to stderr

    r = ws.run("apply", str(ws.manifest), "--output", "json", "--yes")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["kind"] == "apply" and doc["recap"]["changed"] == 3
    assert all(s["result"]["outcome"] == "changed" for s in doc["steps"])

    r = ws.run("plan", str(ws.manifest), "--output=json")
    assert r.code == 0 and json.loads(r.out)["has_changes"] is False


def test_json_output_of_an_error_is_a_json_document(ws):
    (ws.images / "img0.png").unlink()
    ws.manifest.write_text(ws.manifest.read_text().replace("raw/images", "raw/missing"))
    r = ws.run("plan", str(ws.manifest), "--output", "json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["kind"] == "error" and doc["exit_code"] == 1 and "no such folder" in doc["error"]


def test_validate_reports_every_problem_with_file_line_col(ws):
    ws.manifest.write_text(ws.manifest.read_text().replace("    state: operational", "    stat: operational")
                           .replace("raw/labels", "raw/nolabels"))
    r = ws.run("validate", str(ws.manifest))
    assert r.code == 1
    assert f"{ws.manifest}:13:5: datasets[0].stat: unknown key 'stat' (did you mean 'state'?)" in r.err
    assert f"{ws.manifest}:11:18: datasets[0].labels_path: no such folder" in r.err
    assert "2 problems" in r.err


def test_validate_ok_is_offline(ws):
    ws.api = None  # a validate that touched the server would crash
    r = ws.run("validate", str(ws.manifest))
    assert r.code == 0 and "valid: 1 file(s), 1 dataset" in r.out


def test_usage_errors_exit_64(ws):
    assert ws.run("plan").code == 64
    r = ws.run("plan", str(ws.manifest), "--no-such-option")
    assert r.code == 64 and "unrecognized arguments" in r.err
    r = ws.run("plan", str(ws.manifest), "--target", "dataset/nope")
    assert r.code == 64 and "matches no dataset" in r.err
    assert ws.run("plan", str(ws.manifest), "--output", "yaml").code == 64


def test_apply_without_a_terminal_needs_yes(ws):
    r = ws.run("apply", str(ws.manifest))
    assert r.code == 64 and "--yes" in r.err
    assert ws.api.sent() == []


def test_default_command_is_apply_and_dry_run_is_plan(ws):
    r = ws.run(str(ws.manifest), "--dry-run")
    assert r.code == 2 and ws.api.sent() == []
    r = ws.run(str(ws.manifest), "--yes")
    assert r.code == 0 and len(ws.api.sent("POST")) == 1


def test_confirmation_prompt_in_a_terminal(ws):
    r = ws.run("apply", str(ws.manifest), stdin=TTY("n\n"))
    assert r.code == 1 and "cancelled" in r.out and ws.api.sent() == []
    r = ws.run("apply", str(ws.manifest), stdin=TTY("y\n"))
    assert r.code == 0, r.err


def test_missing_consent_without_a_terminal_waits_at_a_gate(ws):
    ws.manifest.write_text(ws.manifest.read_text().replace("    consent:\n      statistics: true\n", ""))
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2 and "? set operational" in r.out and "set consent.statistics: true" in r.out
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 3, r.out + r.err
    assert "pending" in r.out and "consent.statistics" in r.out
    (ds,) = ws.api.world["datasets"].values()
    assert ds["state"] == "DEVELOPMENT" and ds["generated_metadata"] == {}  # no statistics left the machine
    assert (ws.state().dataset_dir(ds["id"]) / ".ready").exists()


def test_missing_consent_in_a_terminal_asks_once_showing_the_body(ws):
    ws.manifest.write_text(ws.manifest.read_text().replace("    consent:\n      statistics: true\n", ""))
    r = ws.run("apply", str(ws.manifest), stdin=TTY("y\nn\n"))  # yes to the plan, no to sending statistics
    assert r.code == 3
    assert r.err.count("Send this for dataset mytestdata?") == 1
    assert '"generated_metadata"' in r.err and '"num_cases": 3' in r.err
    assert ws.api.world["datasets"][1]["state"] == "DEVELOPMENT"
    r = ws.run("apply", str(ws.manifest), stdin=TTY("y\ny\n"))
    assert r.code == 0 and ws.api.world["datasets"][1]["state"] == "OPERATION"


def test_a_failed_sanity_check_leaves_the_dataset_re_preparable(ws):
    ws.runner.fail = {"sanity_check": 3}
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1
    assert "task sanity_check of chestxray_prep exited with code 3" in r.out
    log = ws.state().dataset_dir(1) / "logs" / "sanity_check.log"
    assert f"log: {log}" in r.out
    assert "skipped" in r.out and "prepare did not complete" in r.out
    assert not (ws.state().dataset_dir(1) / ".ready").exists()
    assert [b["report"]["execution_status"] for m, p, b in ws.api.sent("PUT")] == ["started", "finished"]

    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2 and "a previous prepare did not finish" in r.out
    ws.runner.fail = {}
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0
    assert ws.runner.tasks_run() == ["prepare", "sanity_check", "prepare", "sanity_check", "statistics"]


def test_a_failed_prepare_reports_failed_and_names_its_log(ws):
    ws.runner.fail = {"prepare": 2}
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1 and "task prepare of chestxray_prep exited with code 2" in r.out
    assert [b["report"]["execution_status"] for m, p, b in ws.api.sent("PUT")] == ["started", "failed"]
    assert ws.state().journal.unfinished() == []


def test_image_mismatch_fails_the_prepare_step(ws):
    ws.runner.image_ok = False
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1 and "expects sha256:" in r.out
    assert ws.runner.runs == []


def test_empty_statistics_fail_and_leave_no_ready(ws):
    ws.runner.stats = {}
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1 and "wrote no statistics" in r.out
    assert not (ws.state().dataset_dir(1) / ".ready").exists()


def test_saved_plan_is_applied_exactly_and_refused_when_stale(ws):
    plan_file = ws.root / "plan.json"
    r = ws.run("plan", str(ws.manifest), "-o", str(plan_file))
    assert r.code == 2 and json.loads(plan_file.read_text())["has_changes"] is True
    ws.api.add_dataset(id=9, name="someone-else-did-this", input_data_hash="3" * 64, generated_uid="3" * 64)
    r = ws.run("apply", str(ws.manifest), str(plan_file))
    assert r.code == 1 and "stale" in r.err and ws.api.sent() == []

    del ws.api.world["datasets"][9]
    r = ws.run("apply", str(ws.manifest), str(plan_file))  # a saved plan needs no confirmation
    assert r.code == 0, r.err
    assert ws.api.world["datasets"][10 if 10 in ws.api.world["datasets"] else 1]["state"] == "OPERATION"


def test_a_post_that_landed_is_not_sent_twice(ws):
    ws.api.uncertain_posts, ws.api.uncertain_lands = 1, True
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out
    assert len(ws.api.world["datasets"]) == 1 and len(ws.api.sent("POST")) == 1


def test_a_post_that_did_not_land_is_sent_again_after_looking(ws):
    ws.api.uncertain_posts, ws.api.uncertain_lands = 1, False
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out
    assert len(ws.api.world["datasets"]) == 1 and len(ws.api.sent("POST")) == 2
    i = [c[1] for c in ws.api.calls].index("me/datasets/", 4)  # observed between the two POSTs
    assert ws.api.calls[i - 1][0] == "POST" and ws.api.calls[i + 1][0] == "POST"


def test_a_held_lock_stops_apply(ws):
    with StateDir(ws.state_dir).lock():
        r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1 and "locked by" in r.err and "--lock-timeout" in r.err
    assert ws.api.sent() == []
    assert ws.run("plan", str(ws.manifest)).code == 2  # plan reads only: no lock needed


def test_event_log_is_json_lines(ws):
    log = ws.root / "events.jsonl"
    assert ws.run("apply", str(ws.manifest), "--yes", "--event-log", str(log)).code == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "recap"
    assert kinds.count("step_start") == 3 and kinds.count("step_end") == 3
    assert all("time" in e and e["format_version"] == 1 for e in events)


def test_template_variables_and_an_unset_variable(ws):
    ws.manifest.write_text(ws.manifest.read_text().replace("location: My machine", "location: {{ vars.site }}"))
    r = ws.run("plan", str(ws.manifest), "--var", "site=Ward 7")
    assert r.code == 2
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1 and f"{ws.manifest}:9:" in r.err and "'vars.site' is undefined" in r.err


def test_missing_token_is_an_error_without_printing_anything_secret(ws):
    ws.environ = {}
    ws.clients = _real_api_clients(ws)
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1 and "MEDPERF_TOKEN" in r.err and "is not set" in r.err


def _real_api_clients(ws):
    from runner.cli import real_clients

    return lambda environ=None: real_clients(ws.environ)


def test_no_longer_managed_dataset_is_only_noted(ws):
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    ws.manifest.write_text(ws.manifest.read_text().replace("name: mytestdata", "name: renamed"))
    r = ws.run("plan", str(ws.manifest))
    assert "note: dataset mytestdata (id 1, OPERATION): no longer managed" in r.out
    assert r.code == 2  # renamed = a new dataset to register


def test_asking_less_than_exists_is_satisfied(ws):
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    ws.manifest.write_text(ws.manifest.read_text().replace("state: operational", "state: registered"))
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 0 and "already operational (states only move forward)" in r.out


def test_colour_only_on_a_terminal_and_never_with_no_color(ws, monkeypatch):
    from runner.console import Console

    tty = TTY()
    assert Console(tty, tty, None, environ={}).color is True
    assert Console(tty, tty, None, environ={"NO_COLOR": ""}).color is False
    assert Console(TTY(), TTY(), None, environ={}, output="json").human is not None


def test_ctrl_c_during_prepare_exits_130_and_resumes(ws):
    ws.runner.interrupt = "prepare"
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 130 and "interrupted" in r.err
    assert [b["report"]["execution_status"] for m, p, b in ws.api.sent("PUT")] == ["started", "interrupted"]
    entries = ws.state().journal.entries()
    assert [(e.step.rsplit("/", 1)[-1], e.outcome) for e in entries] == [("register", "changed"),
                                                                       ("prepare", "interrupted")]
    ws.runner.interrupt = None
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0 and "= register" in r.out and len(ws.api.sent("POST")) == 1


def test_lock_timeout_waits_then_gives_up(ws):
    import time

    with StateDir(ws.state_dir).lock():
        start = time.monotonic()
        r = ws.run("apply", str(ws.manifest), "--yes", "--lock-timeout", "0.5")
        assert time.monotonic() - start >= 0.5
    assert r.code == 1 and "after waiting 0.5 s" in r.err


def test_saved_plan_is_refused_after_the_manifest_changed(ws):
    plan_file = ws.root / "plan.json"
    assert ws.run("plan", str(ws.manifest), "-o", str(plan_file)).code == 2
    ws.manifest.write_text(ws.manifest.read_text().replace("A tutorial dataset", "Another description"))
    r = ws.run("apply", str(ws.manifest), str(plan_file))
    assert r.code == 1 and "stale" in r.err and "manifest" in r.err and ws.api.sent() == []


def test_progress_and_colour_on_a_terminal(ws):
    r = ws.run("apply", str(ws.manifest), "--yes", tty=True)
    assert r.code == 0
    assert "\x1b[" in r.out  # coloured step lines on a terminal
    ws.environ["NO_COLOR"] = "1"
    r = ws.run("plan", str(ws.manifest), tty=True)
    assert "\x1b[3" not in r.out


def test_an_unfinished_register_is_resolved_by_observing(ws):
    # a run died right after POSTing: the journal says "begin register", the server has the dataset
    ws.api.add_dataset(id=1, name="mytestdata", input_data_hash=ws.raw_hash(), generated_uid=ws.raw_hash())
    ws.state().journal.begin("dataset/mytestdata/register", dataset="mytestdata")
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2 and "registered as dataset 1 (it had landed before an earlier run stopped)" in r.out
    assert len(ws.state().journal.unfinished()) == 1  # plan changes nothing, not even the journal
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0 and ws.api.sent("POST") == []
    assert ws.state().journal.unfinished() == []
    assert "resolved" in [e.outcome for e in ws.state().journal.entries()]


def test_internal_errors_show_a_traceback_only_with_debug(ws):
    def broken(path):
        raise RuntimeError("boom")

    ws.api.list = broken
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1 and "internal error: RuntimeError: boom" in r.err and "Traceback" not in r.err
    r = ws.run("plan", str(ws.manifest), "--debug")
    assert r.code == 1 and "Traceback" in r.err


def test_a_dead_runs_lock_is_taken_over(ws):
    ws.state_dir.mkdir()
    (ws.state_dir / "lock").write_text(json.dumps({"pid": 999999, "host": "h", "started": "t", "run_id": "dead1"}))
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0 and "took over the lock of a run that died (pid 999999" in r.err


def test_interrupted_apply_prints_what_finished(ws):
    ws.runner.interrupt = "statistics"
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 130
    assert "changed  mytestdata: register" in r.out and "Recap (interrupted): 0 ok, 1 changed" in r.out
    assert not (ws.state().dataset_dir(1) / ".ready").exists()


def test_status_report_failures_are_only_warnings(ws):
    from runner.errors import ServerUnavailable

    real_update = ws.api.update

    def flaky(path, body):
        if "report" in body:
            raise ServerUnavailable("PUT: server unavailable after 5 attempts")
        return real_update(path, body)

    ws.api.update = flaky
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0 and "could not send status started" in r.err


def test_statistics_are_sent_json_safe(ws):
    ws.runner.stats = {"num_cases": 3, "mean": float("nan"), "max": float("inf")}
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    assert ws.api.world["datasets"][1]["generated_metadata"] == {"num_cases": 3, "mean": "nan", "max": "Infinity"}


def test_task_timeouts_reach_the_container_runner(tmp_path):
    from runner.cli import parse, real_clients
    from runner.state import StateDir

    opts, _ = parse(["apply", "m.yaml", "--task-timeout", "2h", "--task-idle-timeout", "15m"])
    assert (opts.task_timeout, opts.task_idle_timeout) == (7200.0, 900.0)
    clients = real_clients({}, task_timeout=opts.task_timeout, task_idle_timeout=opts.task_idle_timeout)
    runner = clients.runner(StateDir(tmp_path))
    assert (runner.timeout, runner.inactivity_timeout) == (7200.0, 900.0)
    default, _ = parse(["apply", "m.yaml"])
    assert (default.task_timeout, default.task_idle_timeout) == (None, None)


def test_a_task_timeout_that_is_not_a_duration_is_a_usage_error(ws):
    r = ws.run("apply", str(ws.manifest), "--task-timeout", "soon")
    assert r.code == 64 and "not a duration" in r.err
