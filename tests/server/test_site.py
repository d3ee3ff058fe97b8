"""/api/v0/schema (OpenAPI from schemas/) and the HTML overview at /."""

from __future__ import annotations

import jsonschema

from server.validation import API_SCHEMAS


def test_openapi_document_is_built_from_the_api_schemas(world):
    r = world.anon.get("/schema")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    components = doc["components"]["schemas"]
    assert set(API_SCHEMAS) <= set(components)
    for name in API_SCHEMAS:
        jsonschema.Draft202012Validator.check_schema(components[name])
    assert components["api-model"]["properties"]["container"] == {"$ref": "#/components/schemas/api-mlcube"}
    post_dataset = doc["paths"]["/api/v0/datasets/"]["post"]
    assert post_dataset["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/api-dataset"}
    put_assoc = doc["paths"]["/api/v0/datasets/{dataset_id}/benchmarks/{benchmark_id}/"]["put"]
    assert [p["name"] for p in put_assoc["parameters"]] == ["dataset_id", "benchmark_id"]
    # every documented $ref resolves
    for path in doc["paths"].values():
        for op in path.values():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                assert ref.rsplit("/", 1)[1] in components
    assert "/api/v0/me/results/" in doc["paths"] and "/api/v0/results/{result_id}/" in doc["paths"]


def test_overview_page_lists_benchmarks_datasets_associations_and_results(world):
    ds = world.dataset(world.do, name="<b>mydata</b>")
    world.associate(world.do, ds["id"], approve_with=world.bo)
    r = world.result(world.do, ds["id"], 2)
    world.do.put(f"/results/{r.json()['id']}/", {"results": {"AUC": 0.8125}, "metadata": {"partial": False}})
    world.result(world.do, ds["id"], 1)  # not submitted: not shown
    page = world.session.get("http://testserver/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "chestxray" in html and "&lt;b&gt;mydata&lt;/b&gt;" in html and "<b>mydata</b>" not in html
    assert "APPROVED" in html and "0.8125" in html and "chestxray_linear" in html
    assert html.count("<td>0.8125</td>") == 1


def test_no_web_turns_the_page_off(tmp_path):
    from server.app import make_app
    from server.settings import Settings
    from tests.support.server import inprocess_session

    session = inprocess_session(make_app(Settings(db_url=str(tmp_path / "s.db"), web_ui=False)))
    assert session.get("http://x/").status_code == 404
    assert session.get("http://x/api/v0/schema").status_code == 200
