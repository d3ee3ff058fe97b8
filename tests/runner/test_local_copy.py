"""A dataset the server holds as operational, on a machine (or state dir) without its prepared copy: the plan says
`+ prepare (local copy)`, apply prepares it again sending nothing, checks it against the server's generated_uid,
then runs what is missing; a copy that does not match stops that dataset with both hashes, nothing sent."""

from __future__ import annotations

from tests.runner.test_participation import _add_model, _participating


def _converged(ws):
    _participating(ws)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3  # at the gate
    ws.api.approve(1)
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert ws.run("plan", str(ws.manifest)).code == 0
    return next(iter(ws.api.world["datasets"].values()))


def _new_state_dir(ws):
    ws.state_dir = ws.root / "new-machine-state"


def test_a_new_state_dir_with_nothing_to_run_needs_no_local_copy(ws):
    _converged(ws)
    _new_state_dir(ws)
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 0, r.out
    assert "no prepared copy" in r.out and "+ prepare" not in r.out


def test_a_new_model_on_a_new_state_dir_prepares_a_local_copy_then_runs_and_submits_it(ws):
    ds = _converged(ws)
    records_before = len(ws.api.world["results"])
    _new_state_dir(ws)
    _add_model(ws, 7, "medperf-apply/chestxray-linear:latest")
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2
    assert "+ prepare (local copy)  chestxray_prep: prepare, sanity_check, statistics   (local only; nothing sent)" \
        in r.out
    before = len(ws.api.sent())
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    sent = ws.api.sent()[before:]
    assert not [p for m, p, b in sent if p == f"datasets/{ds['id']}/"]  # no preparation report, no update
    assert ws.state().dataset(ds["id"]).is_ready()
    new = [res for res in ws.api.world["results"].values() if res["model"] == 7]
    assert len(new) == 1 and new[0]["finalized"] is True
    assert len(ws.api.world["results"]) == records_before + 1  # no other record made again
    assert ws.run("plan", str(ws.manifest)).code == 0


def test_a_local_copy_that_does_not_hash_to_the_registered_uid_stops_the_dataset(ws):
    ds = _converged(ws)
    _new_state_dir(ws)
    _add_model(ws, 7, "medperf-apply/chestxray-linear:latest")
    ws.api.world["datasets"][ds["id"]]["generated_uid"] = "e" * 64
    before, tasks_before = len(ws.api.sent()), len(ws.runner.tasks_run())
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1
    assert "not reproducible on this machine" in r.out and "e" * 64 in r.out
    assert ws.api.sent()[before:] == []  # no result record, no status report, no submission
    assert not ws.state().dataset(ds["id"]).is_ready()
    assert ws.runner.tasks_run()[tasks_before:] == ["prepare", "sanity_check", "statistics"]  # no model ran
