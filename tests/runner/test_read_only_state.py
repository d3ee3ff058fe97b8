"""plan, status and results change nothing, so they work on a state dir that cannot be written (a read-only
mount, a backup): the hash cache is kept in memory and nothing is written; apply says clearly that it cannot."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.runner.test_participation import _participating


@pytest.fixture
def read_only(tmp_path):
    """make(folder): the folder cannot be written: a read-only bind mount as root (root ignores modes), else modes."""
    mounted: list = []

    def make(folder):
        if os.geteuid() == 0:
            try:
                subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True, capture_output=True)
                mounted.append(folder)
                subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True)
            except (OSError, subprocess.CalledProcessError) as e:
                pytest.skip(f"cannot make a read-only mount here: {e}")
        else:
            for dirpath, dirs, files in os.walk(folder):
                for name in files + dirs:
                    os.chmod(os.path.join(dirpath, name), 0o500 if name in dirs else 0o400)
            os.chmod(folder, 0o500)
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def test_plan_status_and_results_read_a_read_only_state_dir(ws, read_only):
    _participating(ws)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3
    ws.api.approve(1)
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    listing = sorted(p.relative_to(ws.state_dir).as_posix() for p in ws.state_dir.rglob("*"))
    read_only(ws.state_dir)

    r = ws.run("plan", str(ws.manifest))
    assert r.code == 0, r.err
    assert "No changes." in r.out
    r = ws.run("status", str(ws.manifest))
    assert r.code == 0, r.err
    assert "submitted (result" in r.out
    r = ws.run("results", str(ws.manifest))
    assert r.code == 0, r.err
    assert "b1m2d1" in r.out
    assert sorted(p.relative_to(ws.state_dir).as_posix() for p in ws.state_dir.rglob("*")) == listing

    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 1 and "Traceback" not in r.err
    assert "state dir" in r.err and str(ws.state_dir) in r.err
