"""Bad input beyond the manifest: a registry answering garbage, HTML or the wrong shapes is reported, not crashed
on; bad data folders fail in the prepare task with the container's message and lose nothing (the dataset stays
re-preparable, nothing is sent beyond the registration and its status reports).
"""

from __future__ import annotations

import io
import os
import shutil

import pytest

from runner.cli import main
from tests.infra.fault_server import Answer, FaultServer
from tests.support.clients import Pauses, real_clients_pausing
from tests.trust.conftest import make_data, manifest_text, no_traceback, require_images


def page(items):
    return {"count": len(items), "next": None, "previous": None, "results": items}


GARBAGE = {
    "html page": (Answer(200, raw=b"<html><body>Welcome to nginx</body></html>", content_type="text/html"),
                  "not MedPerf's API"),
    "json object, not a page": (Answer(200, {"unexpected": True}), "is this a MedPerf v0 server?"),
    "truncated json": (Answer(200, raw=b'{"count": 1, "results": ['), "not MedPerf's API"),
    "empty body": (Answer(200, raw=b""), "is this a MedPerf v0 server?"),
    "json null": (Answer(200, raw=b"null"), "is this a MedPerf v0 server?"),
    "binary": (Answer(200, raw=bytes(range(256)), content_type="application/octet-stream"), "not MedPerf's API"),
    "html 404 (wrong base url)": (Answer(404, raw=b"<html>Not Found</html>", content_type="text/html"),
                                  "not MedPerf's API"),
    "html 502 (a gateway)": (Answer(502, raw=b"<html>Bad gateway</html>", content_type="text/html"), "failed 5 times"),
    "redirect to https": (Answer(301, raw=b"", headers={"Location": "https://elsewhere/"}), "elsewhere"),
    "odd 400 body": (Answer(400, [1, {"x": [None]}]), "refused (HTTP 400)"),
    "page of records without ids": (Answer(200, page([{"weird": 1}])), "server"),
    "page of strings": (Answer(200, page(["x", 3, None])), "server"),
    "page of records of the wrong types": (Answer(200, page([{"id": "seven", "name": 5, "state": [],
                                                              "data_preparation_mlcube": "x"}])), "server"),
    "json number": (Answer(200, raw=b"42"), "server"),
    "json list of numbers": (Answer(200, raw=b"[1, 2, 3]"), "server"),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_a_registry_answering_garbage_is_reported(case, tmp_path):
    make_data(tmp_path / "raw", 3)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(manifest_text())
    answer, expected = GARBAGE[case]
    environ = {"MEDPERF_TOKEN": "t", "MEDPERF_SERVER": ""}
    with FaultServer() as fs:
        fs.push(*([answer] * 60))
        environ["MEDPERF_SERVER"] = fs.url
        for command in ("plan", "apply"):
            err, pauses = io.StringIO(), Pauses()  # a 502 is retried with the real back-off, recorded not slept
            argv = [command, str(manifest), "--state-dir", str(tmp_path / "state")]
            code = main(argv + (["--yes"] if command == "apply" else []), stdout=io.StringIO(), stderr=err,
                        stdin=io.StringIO(""), environ=environ, clients=real_clients_pausing(environ, pauses))
            assert code == 1, err.getvalue()
            assert no_traceback(err.getvalue()), err.getvalue()
            assert expected in err.getvalue() and fs.url in err.getvalue(), err.getvalue()
            assert bool(pauses) == ("502" in case), pauses  # only the gateway's error is worth a retry
    assert not (tmp_path / "state" / "ledger.jsonl").exists()  # nothing was sent to it


# -- bad data folders: the prepare task fails with the container's message, and nothing is lost ----------------

def _layout(kind: str, raw):
    images, labels = raw / "images", raw / "labels"
    if kind == "empty folders":
        shutil.rmtree(images)
        shutil.rmtree(labels)
        images.mkdir()
        labels.mkdir()
        return "labels file not found", None
    if kind == "labels.csv in the images folder":
        shutil.move(labels / "labels.csv", images / "labels.csv")
        return "labels file not found", lambda: shutil.move(images / "labels.csv", labels / "labels.csv")
    if kind == "images in a subfolder":
        (images / "sub").mkdir()
        for p in list(images.glob("*.png")):
            shutil.move(p, images / "sub" / p.name)

        def fix():
            for p in list((images / "sub").glob("*.png")):
                shutil.move(p, images / p.name)
            (images / "sub").rmdir()
        return "missing from the data folder", fix
    if kind == "labels.csv with other columns":
        text = (labels / "labels.csv").read_text().replace("Image ID,Label", "id,finding", 1)
        (labels / "labels.csv").write_text(text)
        return "has no column", None
    if kind == "a corrupt image":
        victim = sorted(images.glob("*.png"))[0]
        victim.write_bytes(victim.read_bytes()[:40])
        return "cannot identify image file", None
    raise AssertionError(kind)


BAD_DATA = ("empty folders", "labels.csv in the images folder", "images in a subfolder", "labels.csv with other columns",
            "a corrupt image")


@pytest.mark.docker
@pytest.mark.parametrize("kind", BAD_DATA)
def test_bad_data_fails_in_prepare_and_loses_nothing(kind, trial_factory, docker_client):
    require_images()
    trial = trial_factory(None, cases=6)
    message, fix = _layout(kind, trial.root / "raw")
    for attempt in (1, 2):  # the failed dataset is prepared again on the next run, the same way
        r = trial.run_inprocess("apply")
        assert r.code == 1, r.out + r.err
        assert no_traceback(r.out + r.err)
        failed = [line for line in r.out.splitlines() if line.startswith("failed") and "prepare" in line]
        assert failed and message in failed[0] and "exited with code" in failed[0], r.out
        assert "re-preparable" in failed[0]
        if attempt == 2:
            assert "+ prepare" in r.out  # planned again, not forgotten
    (ds,) = trial.srv_datasets()
    assert ds["state"] == "DEVELOPMENT" and ds["report"]["execution_status"] == "failed"
    assert trial.counts()["datasets"] == 1
    assert not (trial.state_dir / "datasets" / str(ds["id"]) / ".ready").exists()
    for entry in trial.ledger_bodies():  # the registration and its status reports only
        assert (entry["method"], entry["path"]) in (("POST", "datasets/"), ("PUT", f"datasets/{ds['id']}/")), entry
        if entry["method"] == "PUT":
            assert set(entry["body"]) == {"report"}, entry
    if fix is not None:  # the same files (the same hash) in the right place: it converges, under its first id
        fix()
        r = trial.run_inprocess("apply")
        assert r.code == 0, r.out + r.err
        (again,) = trial.srv_datasets()
        assert again["id"] == ds["id"] and again["state"] == "OPERATION"


def test_a_dangling_symlink_in_the_data_is_named_before_anything_is_sent(trial_factory):
    trial = trial_factory(None, cases=3)
    os.symlink(trial.root / "nowhere.png", trial.root / "raw" / "images" / "ghost.png")
    r = trial.run_inprocess("apply")
    assert r.code == 1 and no_traceback(r.out + r.err), r.out + r.err
    assert "ghost.png" in r.err
    assert trial.ledger_bodies() == [] and trial.counts()["datasets"] == 0


# -- a registry that does the write but garbles its answer -------------------------------------------------------

GARBLED = {
    "POST /datasets/ answered {}": ("POST", r"/api/v0/datasets/", b"{}", False),
    "POST /datasets/ answered a string id": ("POST", r"/api/v0/datasets/", b'{"id": "x"}', False),
    "POST /datasets/ answered a list": ("POST", r"/api/v0/datasets/", b"[1]", False),
    "POST /datasets/ answered null": ("POST", r"/api/v0/datasets/", b"null", False),
    "PUT /datasets/N/ answered a list": ("PUT", r"/api/v0/datasets/\d+/", b"[]", True),
    "GET /me/datasets/ answered records without names": (
        "GET", r"/api/v0/me/datasets/", b'{"count": 1, "next": null, "previous": null, "results": [{"id": 1}]}',
        False),
    "POST /results/ answered {}": ("POST", r"/api/v0/results/", b"{}", True),
    "POST /datasets/benchmarks/ answered a bad status": ("POST", r"/api/v0/datasets/benchmarks/",
                                                         b'{"approval_status": 5}', True),
}


@pytest.mark.parametrize("case", list(GARBLED))
def test_a_garbled_answer_to_a_write_is_resolved_by_observing(case, trial_factory, registry, request):
    """The server did the write but answered garbage: no internal error, no duplicate, the run still converges.
    A garbled read (records missing a field) is an error naming the endpoint and the field; the next run converges."""
    from tests.support.proxy import FaultProxy

    method, path, answer, participation = GARBLED[case]
    if participation:
        require_images()
        request.getfixturevalue("docker_client")
    with FaultProxy(registry.url) as proxy:
        text = manifest_text(benchmarks=True) if participation else manifest_text(state="registered")
        trial = trial_factory(proxy, cases=6, text=text)
        garbled = proxy.garble(method, path, answer)
        r = trial.run_inprocess("apply")
        assert garbled.exchange is not None and garbled.exchange.forwarded  # the server did get it
        assert no_traceback(r.out + r.err), r.out + r.err
        if method == "GET":  # a read of records missing a field MedPerf always sends: an error naming both
            assert r.code == 1 and "GET /me/datasets/" in r.err and "missing field 'name'" in r.err, r.out + r.err
            assert trial.ledger_bodies() == []  # it stopped before sending anything
            r = trial.run_inprocess("apply")  # the server answers properly again
        assert r.code in ((3,) if participation else (0,)), r.out + r.err
        again = trial.run_inprocess("apply")
        assert again.code == r.code and "0 changed" in again.out, again.out + again.err
        assert trial.duplicates() == [] and trial.counts()["datasets"] == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_redirect_never_carries_the_token_to_another_server(host, tmp_path):
    """A registry redirecting elsewhere (another port, another name): the other server never sees the token."""
    make_data(tmp_path / "raw", 3)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(manifest_text())
    token = "mpa_secret-token-that-must-stay-home"
    with FaultServer() as elsewhere, FaultServer() as registry:
        elsewhere.push(*([Answer(200, {"count": 0, "next": None, "previous": None, "results": []})] * 40))
        registry.push(*([Answer(302, raw=b"", headers={"Location": f"http://{host}:{elsewhere.port}/api/v0/x/"})]
                        * 40))
        err = io.StringIO()
        code = main(["plan", str(manifest), "--state-dir", str(tmp_path / "state")], stdout=io.StringIO(), stderr=err,
                    stdin=io.StringIO(""), environ={"MEDPERF_TOKEN": token, "MEDPERF_SERVER": registry.url})
        assert code == 1 and no_traceback(err.getvalue()), err.getvalue()
        leaked = [s for s in elsewhere.seen if any(token in v for v in s.headers.values())]
        assert registry.seen and leaked == [], leaked
        assert all(token in s.headers.get("Authorization", "") for s in registry.seen)
