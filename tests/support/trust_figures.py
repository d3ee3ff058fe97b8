"""The trust tests' closing figures (kill points, orphaned containers, faults injected, fuzzing, the privacy search),
printed after the run; with pytest-xdist each worker hands its own to the controller, which prints them all.
Loaded by tests/conftest.py (the controller loads no conftest below tests/)."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

FIGURES = {"KILLED": "tests.trust.test_crash_resume", "ORPHANS": "tests.trust.test_crash_resume",
           "CHAOS": "tests.trust.test_crash_resume", "INJECTED": "tests.trust.test_flaky_server",
           "RUNS": "tests.trust.test_flaky_server", "FUZZED": "tests.trust.test_openapi_fuzz",
           "SEARCHED": "tests.trust.test_privacy_canary"}
_FROM_WORKERS: list[dict] = []  # with pytest-xdist: each worker's figures, gathered by the controller


def _figures() -> dict:
    """This process's figures of the trust tests that ran in it (plain lists and dicts)."""
    out = {}
    for name, module in FIGURES.items():
        value = getattr(sys.modules.get(module), name, None)
        if value:
            out[name] = dict(value) if isinstance(value, Counter) else list(value)
    return out


def pytest_sessionfinish(session):
    """An xdist worker hands its figures to the controller (the tests, and so the figures, ran here)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["trust_figures"] = _figures()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    figures = getattr(node, "workeroutput", {}).get("trust_figures")
    if figures:
        _FROM_WORKERS.append(figures)


def _merged() -> dict:
    merged: dict = {}
    for figures in [_figures(), *_FROM_WORKERS]:
        for name, value in figures.items():
            if isinstance(value, dict):
                merged[name] = merged.get(name, Counter()) + Counter(value)
            else:
                merged[name] = merged.get(name, []) + value
    return merged


def pytest_terminal_summary(terminalreporter):
    """The closing figures of the trust tests that ran: kill points, orphaned containers, faults injected."""
    f = _merged()
    if not f:
        return
    terminalreporter.section("trust figures")
    if f.get("KILLED"):
        terminalreporter.write_line(f"kill points tried: {len(f['KILLED'])}; orphaned task containers found: "
                                    f"{sum(f.get('ORPHANS', []))}")
    if f.get("INJECTED"):
        terminalreporter.write_line(f"faults injected by the proxy: {sum(f['INJECTED'].values())} "
                                    f"{dict(f['INJECTED'])}; runs to converge: {f.get('RUNS', [])}")
    if f.get("CHAOS"):
        terminalreporter.write_line(f"chaos (random kills on a flaky registry): {'; '.join(f['CHAOS'])}")
    if f.get("FUZZED"):
        terminalreporter.write_line(f"schemathesis: {'; '.join(f['FUZZED'])}")
    if f.get("SEARCHED"):
        terminalreporter.write_line(f"privacy canary: searched {'; '.join(f['SEARCHED'])}")
