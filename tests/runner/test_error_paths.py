"""Error paths of apply through the CLI in-process, with the fakes: Ctrl-C while waiting and inside a model's
evaluate, a submission the server refuses because the result was finalized meanwhile, an uncertain result POST
that did not land, raw data that changed after the plan, and a full disk under the journal."""

from __future__ import annotations

import dataclasses
import errno
import os

import pytest

from runner.errors import Interrupted
from runner.hashing import folders_hash
from tests.runner.conftest import participating


def _auto_approved(ws, **replace):
    participating(ws, **replace)
    ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
    return ws


def _statuses(ws, result_id: int) -> list[str]:
    out = []
    for _, path, body in ws.api.sent("PUT"):
        if path == f"results/{result_id}/":
            out += [f"{k.split('_')[0]} {body[k]['execution_status']}" for k in ("model_report", "evaluation_report")
                    if k in body]
    return out


def _result_of(ws, model: int) -> dict:
    (res,) = [r for r in ws.api.world["results"].values() if r["model"] == model]
    return res


# -- Ctrl-C -----------------------------------------------------------------------------------------------

def test_ctrl_c_while_waiting_for_approval_exits_130_sends_nothing_more_and_resumes(ws):
    participating(ws)
    at_interrupt: list[int] = []

    def ctrl_c(n: int) -> None:
        if n == 2:  # during the second pause between polls
            at_interrupt.append(len(ws.api.calls))
            raise KeyboardInterrupt

    ws.clock.on_sleep = ctrl_c
    r = ws.run("apply", str(ws.manifest), "--yes", "--wait")
    assert r.code == 130, r.out + r.err
    assert "interrupted" in r.err and "Traceback" not in r.err
    assert "Recap (interrupted)" in r.out
    assert len(ws.clock.sleeps) == 2 and len(ws.api.calls) == at_interrupt[0]  # not one request after Ctrl-C
    assert ws.state().journal.unfinished() == []
    # the request waits on the server, untouched; once approved, the next apply goes on from where it stopped
    assert [row["approval_status"] for row in ws.api.world["dataset_assocs"]] == ["PENDING"]
    ws.api.approve(1)
    ws.clock.on_sleep = lambda n: None
    r = ws.run("apply", str(ws.manifest), "--yes", "--wait")
    assert r.code == 0, r.out + r.err
    assert len(ws.api.sent("POST")) == 1 + 1 + 2  # the dataset, the request, two result records: none twice
    assert ws.runner.tasks_run().count("infer") == 2  # the reference ran once, in the compatibility test
    assert all(res["finalized"] for res in ws.api.world["results"].values())


@pytest.mark.parametrize("how", [KeyboardInterrupt, Interrupted], ids=["KeyboardInterrupt", "Interrupted (Docker)"])
@pytest.mark.parametrize("where", ["compatibility test", "model run"])
def test_ctrl_c_inside_evaluate_exits_130_and_resumes_with_the_same_record(ws, how, where):
    """Ctrl-C during a model's evaluate, as it reaches the runner (KeyboardInterrupt) or as DockerRunner raises
    it once it has stopped the container (Interrupted): exit 130, the run stops there, the record is reused."""
    _auto_approved(ws)
    model = 1 if where == "compatibility test" else 2
    ws.runner.interrupt, ws.runner.interrupt_skips = "evaluate", model - 1  # model 2's evaluate is the second
    ws.runner.interrupt_as = how
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 130, r.out + r.err
    assert "Recap (interrupted)" in r.out and "Traceback" not in r.err
    res = _result_of(ws, model)
    assert _statuses(ws, res["id"]) == ["model pending", "evaluation pending", "model started", "model finished",
                                        "evaluation started", "evaluation interrupted"]
    assert ws.api.sent()[-1] == ("PUT", f"results/{res['id']}/", {"evaluation_report":
                                                                  {"execution_status": "interrupted"}})
    if model == 1:  # the run stopped there: model 2 never started
        assert [r_["model"] for r_ in ws.api.world["results"].values()] == [1]
    assert not (ws.state().result_dir(res["id"]) / ".executed").exists()
    assert ws.state().journal.unfinished() == []
    ws.runner.interrupt = None
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert sorted(r_["model"] for r_ in ws.api.world["results"].values()) == [1, 2]  # the same record, run again
    assert all(r_["finalized"] for r_ in ws.api.world["results"].values())


# -- submissions and result records -----------------------------------------------------------------------------

def test_a_submission_finalized_meanwhile_is_left_alone(ws):
    """The server refuses the PUT (400, finalized meanwhile, e.g. by another run): the runner looks, sees it final,
    and leaves it alone."""
    _auto_approved(ws)
    real_update = ws.api.update
    finalized_elsewhere: list[int] = []

    def meanwhile(path, body):
        if "results" in body and not finalized_elsewhere:
            rid = int(path.split("/")[1])
            ws.api.world["results"][rid].update(finalized=True, results={"Accuracy": 0.5})
            finalized_elsewhere.append(rid)
        return real_update(path, body)

    ws.api.update = meanwhile
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    (rid,) = finalized_elsewhere
    refused = ws.api.calls.index(("PUT", f"results/{rid}/", {"results": {"Accuracy": 0.75, "AUC": 0.8125},
                                                              "metadata": {"partial": False}}))
    assert ws.api.calls[refused + 1] == ("GET", f"results/{rid}/", None)  # it looked instead of failing
    assert ws.api.world["results"][rid]["results"] == {"Accuracy": 0.5}  # left as it was finalized
    assert all(res["finalized"] for res in ws.api.world["results"].values())
    assert sum(1 for m, p, b in ws.api.sent("PUT") if p == f"results/{rid}/" and "results" in b) == 1  # not again
    assert "submitted 0 results ()" in r.out  # not counted as submitted by this run


def test_a_refused_submission_that_is_not_final_fails_the_step(ws):
    """A 400 for another reason: the runner looks, the result is not final, so the refusal is the step's error."""
    from runner.errors import ServerError

    _auto_approved(ws)
    real_update = ws.api.update

    def refuse(path, body):
        if "results" in body:
            raise ServerError("PUT /api/v0/results/ was refused (HTTP 400): results: Not a valid dict.", status=400)
        return real_update(path, body)

    ws.api.update = refuse
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1, r.out + r.err
    assert "Not a valid dict." in r.out
    assert not any(res["finalized"] for res in ws.api.world["results"].values())


def test_an_uncertain_result_post_that_did_not_land_is_looked_for_then_sent_once(ws):
    _auto_approved(ws, **{"results: submitted": "results: none"})
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    assert len(ws.api.world["results"]) == 1  # the compatibility test's record only
    ws.manifest.write_text(ws.manifest.read_text().replace("results: none", "results: submitted"))
    ws.api.uncertain_posts, ws.api.uncertain_lands = 1, False  # model 2's POST is lost before it lands
    before = len(ws.api.calls)
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    after = [(m, p) for m, p, _ in ws.api.calls[before:] if (m, p) in (("POST", "results/"), ("GET", "me/results/"))]
    assert after[-3:] == [("POST", "results/"), ("GET", "me/results/"), ("POST", "results/")]
    assert after.count(("POST", "results/")) == 2  # the lost one, and once more after looking
    assert sorted(res["model"] for res in ws.api.world["results"].values()) == [1, 2]
    assert _result_of(ws, 2)["finalized"]


# -- raw data that changed after the plan ------------------------------------------------------------------------

def test_a_saved_plan_applied_after_a_raw_file_changed_sends_nothing(ws):
    plan_file = ws.root / "plan.json"
    assert ws.run("plan", str(ws.manifest), "-o", str(plan_file)).code == 2
    (ws.images / "img1.png").write_bytes(b"another image")
    r = ws.run("apply", str(ws.manifest), str(plan_file))
    assert r.code == 1, r.out + r.err
    assert "stale" in r.err and "plan" in r.err and "Traceback" not in r.err
    assert ws.api.sent() == [] and ws.runner.runs == []


def test_raw_data_changed_during_apply_is_a_drift_error_and_nothing_is_registered(ws):
    """The file changes after the plan hashed it, before register hashes it again."""
    hashed: list[int] = []

    def hasher(paths, **kw):
        digest = folders_hash(paths, **kw)
        hashed.append(1)
        if len(hashed) == 1:  # the plan's hash is taken: now the data owner edits a file
            (ws.images / "img1.png").write_bytes(b"edited while the plan was shown")
        return digest

    fakes = ws.clients
    ws.clients = lambda environ=None: dataclasses.replace(fakes(environ), hasher=hasher)
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1, r.out + r.err
    assert "the raw data changed since the plan" in r.out and "plan again" in r.out
    assert ws.api.sent() == [] and ws.runner.runs == []


# -- a full disk under the journal -----------------------------------------------------------------------------

def _disk_full_for_the_journal(monkeypatch, call: str, when=lambda data: True):
    """os.write or os.fsync fail with ENOSPC on the journal's file descriptor (every other file is untouched)."""
    real = getattr(os, call)

    def journal_fd(fd) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").endswith("journal.jsonl")
        except OSError:
            return False

    def failing(fd, *args):
        if journal_fd(fd) and when(args[0] if args else b""):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    monkeypatch.setattr(os, call, failing)


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_a_full_disk_before_a_step_is_a_clear_error_and_nothing_is_sent(ws, monkeypatch, call):
    _disk_full_for_the_journal(monkeypatch, call)
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1, r.out + r.err
    assert "No space left on device" in r.out and "journal.jsonl" in r.out and "check free space" in r.out
    assert "Traceback" not in r.out + r.err and "internal error" not in r.err
    assert ws.api.sent() == []  # the journal entry comes first: without it, nothing goes out
    monkeypatch.undo()  # space freed: the next run does it all
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert len(ws.api.sent("POST")) == 1


def test_a_full_disk_after_the_post_is_resolved_by_observing_on_the_next_run(ws, monkeypatch):
    """The registration landed but its journal entry could not be closed: the next run finds the dataset on the
    server (it observes before sending anything) instead of registering it twice."""
    _disk_full_for_the_journal(monkeypatch, "write", when=lambda data: b'"event": "end"' in bytes(data))
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1, r.out + r.err
    assert "No space left on device" in r.out and "Traceback" not in r.out + r.err
    assert [(m, p) for m, p, _ in ws.api.sent()] == [("POST", "datasets/")]
    assert [e.step.rsplit("/", 1)[-1] for e in ws.state().journal.unfinished()] == ["register"]
    monkeypatch.undo()
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert len(ws.api.sent("POST")) == 1 and len(ws.api.world["datasets"]) == 1  # registered once
    assert ws.state().journal.unfinished() == []
