"""Privacy proof: a canary string sits in the raw image bytes, in labels.csv (the
image ids and an extra column), in the file names and in the folder names; the whole tutorial runs through
the recording proxy, to submitted results (approved by the benchmark owner with `medperf-apply association
approve`). Then the server's database dump, every request the proxy saw (bodies, paths, query strings) and the
ledger hold zero occurrences of the canary and of the absolute local paths.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.support.proxy import FaultProxy
from tests.trust.conftest import cli_command, make_data, manifest_text, no_traceback, require_images

CANARY = "CANARY-7f3a9c-PATIENT-JANE-DOE"
SEARCHED: list[str] = []


def _png_with_text(png: bytes, text: str) -> bytes:
    """Insert a tEXt chunk (a valid PNG stays valid) right after IHDR."""
    data = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def _canary_data(root: Path) -> Path:
    """Toy data with the canary in the folder names, the file names, the image bytes and labels.csv."""
    plain = make_data(root / "plain", 16)
    raw = root / f"hospital-{CANARY}" / "raw"
    images, labels = raw / f"images-{CANARY}", raw / f"labels-{CANARY}"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rows = list(csv.reader((plain / "labels" / "labels.csv").open()))
    with (labels / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*rows[0], "Note"])
        for image_id, label in rows[1:]:
            new_id = f"{CANARY}_{image_id}"
            png = (plain / "images" / f"{image_id}.png").read_bytes()
            (images / f"{new_id}.png").write_bytes(_png_with_text(png, f"patient {CANARY}"))
            w.writerow([new_id, label, f"referred by {CANARY}"])
    return raw


def _local_paths(trial, raw: Path) -> list[str]:
    paths = {str(trial.root), str(trial.root.resolve()), str(trial.state_dir), str(raw), str(raw.resolve()),
             str(Path.home()) + "/"}
    return sorted(p for p in paths if len(p) > 2)


def find_leaks(trial, registry, proxy, needles) -> tuple[list[str], dict]:
    """Search the server's database dump, every request the proxy carried and every ledger for the needles."""
    db = sqlite3.connect(f"file:{registry.db_url}?mode=ro", uri=True)
    dump = "\n".join(db.iterdump())
    db.close()
    seen = [f"{e.method} {e.path}\n{e.body.decode('utf-8', 'replace')}" for e in proxy.exchanges]
    ledgers = [p.read_text() for p in trial.root.rglob("ledger.jsonl")]
    leaks = []
    for where, texts in (("database dump", [dump]), ("requests", seen), ("ledgers", ledgers)):
        for text in texts:
            for needle in needles:
                if needle in text:
                    leaks.append(f"{where}: {needle!r} in {text[max(0, text.find(needle) - 80):][:200]!r}")
    return leaks, {"dump": len(dump), "requests": len(seen), "ledgers": len(ledgers),
                   "ledger_lines": sum(t.count("\n") for t in ledgers)}


@pytest.mark.parametrize("mode", ["description", "location"])
def test_the_leak_search_finds_a_canary_that_did_leave(mode, trial_factory, registry):
    """The detector is not blind: a canary the manifest itself sends (in description/location) is found everywhere."""
    with FaultProxy(registry.url) as proxy:
        text = manifest_text(state="registered").replace(f"{mode}: ", f"{mode}: {CANARY} ")
        trial = trial_factory(proxy, cases=3, text=text, name=f"leak-{mode}")
        assert trial.run_inprocess("apply").code == 0
        leaks, _ = find_leaks(trial, registry, proxy, [CANARY])
    assert {leak.split(":")[0] for leak in leaks} == {"database dump", "requests", "ledgers"}, leaks


@pytest.mark.docker
@pytest.mark.slow
def test_no_canary_and_no_local_path_leaves_the_machine(trial_factory, registry, docker_client):
    require_images()
    from tests.support.server import TESTBO

    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=3, text="placeholder")
        raw = _canary_data(trial.root)
        rel = raw.relative_to(trial.root)
        trial.write(manifest_text(raw=str(rel), benchmarks=True).replace(f"{rel}/images", f"{rel}/images-{CANARY}")
                    .replace(f"{rel}/labels", f"{rel}/labels-{CANARY}"))

        r = trial.run("apply")
        assert r.code == 3, r.out + r.err  # registered, prepared, operational, associated: waits for approval
        approve = subprocess.run(
            [*cli_command(), "association", "approve", "--benchmark", "chestxray", "--dataset", "mytestdata",
             "--server", trial.url, "--state-dir", str(trial.root / "bo-state")],
            env={**trial.env, "MEDPERF_TOKEN": trial.srv.tokens[TESTBO]}, capture_output=True, text=True, timeout=60)
        assert approve.returncode == 0, approve.stdout + approve.stderr
        r = trial.run("apply")
        assert r.code == 0 and no_traceback(r.out + r.err), r.out + r.err

        # status, results and plan only read: no body leaves, whatever they show locally
        before = len(proxy.exchanges)
        for command in ("status", "results", "plan"):
            shown = trial.run(command)
            assert shown.code == 0 and no_traceback(shown.out + shown.err), shown.out + shown.err
        assert {(e.method, e.body) for e in proxy.exchanges[before:]} == {("GET", b"")}

        # the whole tutorial happened, with the canary's data
        with trial.db() as conn:
            assert conn.execute("SELECT state FROM datasets").fetchone() == ("OPERATION",)
            assert conn.execute("SELECT count(*) FROM results WHERE finalized = 1").fetchone() == (2,)
        ds_dir = trial.state_dir / "datasets" / str(trial.srv_datasets()[0]["id"])
        assert any(CANARY in p.name for p in (ds_dir / "data").iterdir())  # it is here, locally
        assert CANARY in (ds_dir / "raw.yaml").read_text()

        needles = [CANARY, CANARY.lower(), *_local_paths(trial, raw)]
        leaks, searched = find_leaks(trial, registry, proxy, needles)
        assert searched["requests"] > 20 and searched["ledgers"] == 2 and searched["ledger_lines"] >= 10, searched
        SEARCHED.append(f"{searched} for {len(needles)} needles: {len(leaks)} leaks")
        assert leaks == []
        # the tokens are never written anywhere: state dirs, ledgers, logs, event log, the runs' output
        tokens = [trial.env["MEDPERF_TOKEN"], trial.srv.tokens[TESTBO]]
        written = [p for p in trial.root.rglob("*") if p.is_file() and "plain" not in p.parts]
        assert len(written) > 50
        holding = [str(p) for p in written for t in tokens if t.encode() in p.read_bytes()]
        assert holding == [], holding
        # and locally: the state dir, with the prepared data and results under it, is private to its user
        assert trial.state_dir.stat().st_mode & 0o077 == 0, oct(trial.state_dir.stat().st_mode)
        # every body the server received is in a ledger, as sent (nothing bypasses the privacy check and the ledger)
        logged = [json.dumps(json.loads(line)["body"], sort_keys=True)
                  for p in trial.root.rglob("ledger.jsonl") for line in p.read_text().splitlines() if line.strip()]
        carried = [json.dumps(json.loads(e.body), sort_keys=True) for e in proxy.exchanges if e.body]
        assert carried and [b for b in carried if b not in logged] == []
        # what was sent is exactly what runner/privacy.py allows: statistics without ids, metrics without predictions
        sent_bodies = [e for e in proxy.exchanges if e.method in ("POST", "PUT")]
        assert {e.path.split("?")[0].rstrip("/").rsplit("/", 1)[0] for e in sent_bodies} <= {
            "/api/v0", "/api/v0/datasets", "/api/v0/results", "/api/v0/datasets/1/benchmarks"}
