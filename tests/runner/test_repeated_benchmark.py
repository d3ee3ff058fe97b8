"""The same benchmark listed twice under one dataset (a template produces this easily) is refused before anything
is done: by validate when the two entries are spelled alike, by the plan when one names it by id and the other by
name; never duplicate steps or duplicate step keys in a saved plan."""

from __future__ import annotations

from runner.load import load
from runner.validate import InvalidManifest, validate

TWICE = """\
    benchmarks:
      - benchmark: {first}
      - benchmark: {second}
        results: computed
"""


def test_validate_names_both_places_of_a_repeated_benchmark(ws):
    ws.manifest.write_text(ws.manifest.read_text() + TWICE.format(first="chestxray", second="chestxray"))
    r = ws.run("validate", str(ws.manifest))
    assert r.code == 1
    lines = [line for line in r.err.splitlines() if "listed twice" in line]
    assert len(lines) == 1
    assert f"{ws.manifest}:18:" in lines[0] and f"(also at {ws.manifest}:17:" in lines[0]
    assert "list each benchmark once per dataset" in lines[0]


def test_validate_refuses_it_in_process_too(ws):
    ws.manifest.write_text(ws.manifest.read_text() + TWICE.format(first="1", second="1"))
    try:
        validate(load([ws.manifest], environ=ws.environ))
    except InvalidManifest as e:
        assert [p.path for p in e.problems] == ["datasets[0].benchmarks[1].benchmark"]
    else:
        raise AssertionError("a repeated benchmark passed validation")


def test_the_plan_refuses_one_benchmark_named_by_id_and_by_name(ws):
    ws.manifest.write_text(ws.manifest.read_text() + TWICE.format(first="1", second="chestxray"))
    assert ws.run("validate", str(ws.manifest)).code == 0  # offline, the two cannot be told apart
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 1
    assert "lists benchmark chestxray (1) twice: as 1" in r.err and "as 'chestxray'" in r.err
    assert ws.api.sent() == []
