"""An interrupt while models run in parallel (`apply --parallel 2`) reaches the main thread only: it stops the
workers' containers, the workers report their tasks `interrupted` and send nothing else, nothing is submitted, and
the run exits 130. A real SIGINT, delivered to this process while the CLI runs in-process."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from runner.errors import ContainerError
from tests.runner.fakes import FakeRunner
from tests.runner.test_participation import _add_model, _participating


class BlockingRunner(FakeRunner):
    """infer runs until stop_all stops it (as the engine kills a container), like a long model."""

    def __init__(self, blocking: int):
        super().__init__()
        self.started = threading.Semaphore(0)
        self.stopped = threading.Event()
        self.blocking = blocking

    def run_task(self, spec, task, volumes, *, log_path: Path, on_line=None, **kw):
        if task == "infer" and threading.current_thread() is not threading.main_thread():
            self.started.release()
            if not self.stopped.wait(30):
                raise AssertionError("the interrupt did not stop the container")
            raise ContainerError(f"{task} of {spec.image} exited with code 137", image=spec.image, task=task,
                                 exit_code=137, log_path=str(log_path))
        return super().run_task(spec, task, volumes, log_path=log_path, on_line=on_line, **kw)

    def stop_all(self) -> None:
        self.stopped.set()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigint_during_a_parallel_group_stops_every_model_and_submits_nothing(ws):
    _participating(ws)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3
    ws.api.approve(1)
    for mid in (7, 8):
        _add_model(ws, mid, "medperf-apply/chestxray-linear:latest")
    ws.runner = BlockingRunner(blocking=3)

    def interrupt_once_running() -> None:
        for _ in range(2):  # two models are running in their threads
            assert ws.runner.started.acquire(timeout=30)
        os.kill(os.getpid(), signal.SIGINT)

    before = len(ws.api.sent())
    threading.Thread(target=interrupt_once_running, daemon=True).start()
    r = ws.run("apply", str(ws.manifest), "--yes", "--parallel", "2")
    assert r.code == 130, r.out + r.err
    assert ws.runner.stopped.is_set()
    assert "Recap (interrupted)" in r.out and "run again" in r.err
    after = ws.api.sent()[before:]
    assert not [p for m, p, body in after if m == "PUT" and "results" in body], "submitted after the interrupt"
    reports = [body["model_report"]["execution_status"] for m, p, body in after if m == "PUT" and "model_report" in body]
    assert reports.count("interrupted") == 2 and "failed" not in reports
    assert not [res for res in ws.api.world["results"].values() if res["finalized"]]
    ws.runner = FakeRunner()
    r = ws.run("apply", str(ws.manifest), "--yes", "--parallel", "2")
    assert r.code == 0, r.out + r.err
    assert len([res for res in ws.api.world["results"].values() if res["finalized"]]) == 4
