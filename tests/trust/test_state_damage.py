"""A damaged state dir (a disk that filled up, a user's editor, a crash of another tool): the runner says which
file and what to do, and doing it is enough; caches and logs it can rebuild or skip do not stop it."""

from __future__ import annotations

import pytest

from tests.trust.conftest import manifest_text, no_traceback, require_images


def test_garbage_in_the_cache_journal_ledger_and_lock_does_not_stop_a_run(trial_factory):
    trial = trial_factory(None, cases=3, text=manifest_text(state="registered"))
    assert trial.run_inprocess("apply").code == 0
    for name, junk in {"hash-cache.sqlite": b"garbage" * 100, "journal.jsonl": b'{"event": "begin", "id": "x", "st\n\x00\xff',
                       "ledger.jsonl": b"\x00\xff garbage", "lock": b"\x00\xff garbage"}.items():
        (trial.state_dir / name).write_bytes(junk)
    r = trial.run_inprocess("apply")
    assert r.code == 0 and no_traceback(r.out + r.err), r.out + r.err
    assert trial.duplicates() == []


@pytest.mark.parametrize("damage", ["corrupt", "deleted as told"])
def test_a_damaged_statistics_file_names_itself_and_the_fix_works(damage, trial_factory, docker_client):
    require_images()
    trial = trial_factory(None, cases=6, text=manifest_text(state="prepared"))
    assert trial.run_inprocess("apply").code == 0
    stats = trial.state_dir / "datasets" / "1" / "statistics.yaml"
    stats.write_text("num_cases: [unclosed\n")
    trial.write(manifest_text(state="operational"))
    r = trial.run_inprocess("apply")
    assert r.code == 1 and no_traceback(r.out + r.err), r.out + r.err
    assert f"{stats}:2:1: corrupt YAML" in r.out and "delete the file" in r.out, r.out
    if damage == "deleted as told":  # it used to stay "statistics.yaml is empty; prepare it again" forever
        stats.unlink()
        r = trial.run_inprocess("apply")
        assert r.code == 0, r.out + r.err
        assert "statistics.yaml is missing" in r.out and "sanity_check, statistics done" in r.out, r.out
        (ds,) = trial.srv_datasets()
        assert ds["state"] == "OPERATION" and ds["generated_metadata"]["num_cases"] == 6
