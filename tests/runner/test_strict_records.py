"""status and results read the server's records as strictly as plan: a record missing a field MedPerf always sends
is exit 1 naming the endpoint and the field, never a silently shorter view."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", ["plan", "status", "results"])
@pytest.mark.parametrize("field", ["reference_model", "data_evaluator_mlcube", "data_preparation_mlcube"])
def test_a_benchmark_record_missing_a_field_is_an_error_naming_it(ws, command, field):
    ws.manifest.write_text(ws.manifest.read_text() + "    benchmarks:\n      - benchmark: chestxray\n")
    del ws.api.world["benchmarks"][1][field]
    r = ws.run(command, str(ws.manifest))
    assert r.code == 1, (r.out, r.err)
    assert f"missing field '{field}'" in r.err and "GET /benchmarks/" in r.err
    assert "Traceback" not in r.err


def test_the_old_name_of_the_reference_model_field_is_read(ws):
    ws.manifest.write_text(ws.manifest.read_text() + "    benchmarks:\n      - benchmark: chestxray\n")
    bench = ws.api.world["benchmarks"][1]
    bench["reference_model_mlcube"] = bench.pop("reference_model")
    r = ws.run("status", str(ws.manifest))
    assert r.code == 0, r.err
    assert "model 1 (reference)" in r.out
