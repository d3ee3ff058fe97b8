"""/api/v0/schema (OpenAPI from schemas/), and the web page at / behind a sign-in: it shows each user
exactly what the API lets them read, and nothing to an anonymous visitor."""

from __future__ import annotations

import re

import jsonschema
import pytest
import requests

from server.validation import API_SCHEMAS
from tests.support.server import TESTADMIN, TESTBO, TESTDO, TESTDO2, TESTMO, inprocess_session, live_server

SITE = "http://testserver"
DO_DATASET, DO2_DATASET = "<b>mydata</b>", "do2-hospital-data"
DO_AUC, DO2_AUC, UNSUBMITTED_AUC = "0.8125", "0.4375", "0.0625"
SECRET_METRIC = "<script>alert(1)</script>"


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
    assert not any(p in doc["paths"] for p in ("/", "/login", "/logout"))


# ---------------------------------------------------------------- the web page


@pytest.fixture
def hospitals(world):
    """Two data owners with an approved association and one submitted result each, plus an unsubmitted one."""
    owners = ((world.do, DO_DATASET, DO_AUC, "AUC"), (world.do2, DO2_DATASET, DO2_AUC, SECRET_METRIC))
    for owner, name, auc, metric in owners:
        ds = world.dataset(owner, name=name)
        world.associate(owner, ds["id"], approve_with=world.bo)
        r = world.result(owner, ds["id"], 2)
        assert r.status_code == 201, r.text
        r = owner.put(f"/results/{r.json()['id']}/", {"results": {metric: float(auc)}, "metadata": {"partial": False}})
        assert r.status_code == 200, r.text
    r = world.result(world.do, 1, 1)
    assert r.status_code == 201, r.text
    assert world.do.put(f"/results/{r.json()['id']}/", {"metadata": {"AUC": float(UNSUBMITTED_AUC)}}).status_code == 200
    return world


def sign_in(world, email: str, base: str = SITE) -> dict:
    """POST /login with the user's token in the form body; return the Cookie header for later requests."""
    r = world.session.post(base + "/login", data={"token": world.tokens[email]}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/", r.text
    return {"Cookie": r.headers["Set-Cookie"].split(";", 1)[0]}


def page(world, email: str | None) -> str:
    r = world.session.get(SITE + "/", headers=sign_in(world, email) if email else {})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"
    return r.text


def rows(html: str, kind: str) -> set[int]:
    return {int(x) for x in re.findall(rf'<tr id="{kind}-(\d+)">', html)}


def assert_no_records(html: str):
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)  # the stylesheet names the states
    for secret in ("chestxray", "mydata", DO2_DATASET, DO_AUC, DO2_AUC, UNSUBMITTED_AUC, "AUC", "alert(1)",
                   "APPROVED", "testdo"):
        assert secret not in html, secret


def test_anonymous_visitors_see_the_sign_in_form_and_no_record(hospitals):
    html = page(hospitals, None)
    assert '<form method="post" action="/login">' in html and 'type="password" name="token"' in html
    assert_no_records(html)
    # an Authorization header is the API's credential, not the page's: still the form
    r = hospitals.session.get(SITE + "/", headers={"Authorization": f"Bearer {hospitals.tokens[TESTADMIN]}"})
    assert "Sign in" in r.text
    assert_no_records(r.text)


def test_a_token_in_a_url_is_not_accepted(hospitals):
    token = hospitals.tokens[TESTADMIN]
    r = hospitals.session.get(SITE + "/", params={"token": token})
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    assert_no_records(r.text)
    r = hospitals.session.post(SITE + "/login", params={"token": token}, allow_redirects=False)
    assert r.status_code == 400 and "Set-Cookie" not in r.headers and "Paste your API token" in r.text
    r = hospitals.session.get(SITE + "/login", params={"token": token}, allow_redirects=False)
    assert r.status_code == 405 and "Set-Cookie" not in r.headers


def test_sign_in_sets_an_http_only_same_site_strict_session_cookie_and_sign_out_clears_it(hospitals):
    r = hospitals.session.post(SITE + "/login", data={"token": hospitals.tokens[TESTDO]}, allow_redirects=False)
    assert r.status_code == 303
    name_value, *flags = [part.strip() for part in r.headers["Set-Cookie"].split(";")]
    nonce, _, token = name_value.removeprefix("medperf_token=").partition(".")
    assert token == hospitals.tokens[TESTDO] and re.fullmatch(r"[A-Za-z0-9_-]{22}", nonce), name_value
    flags = {f.split("=")[0].lower(): f.partition("=")[2] for f in flags}
    assert flags["httponly"] == "" and flags["samesite"].lower() == "strict" and flags["path"] == "/"
    assert "max-age" not in flags and "expires" not in flags  # gone when the browser closes
    assert "secure" not in flags  # plain http (a loopback demo): a Secure cookie would never come back
    r = hospitals.session.post("https://testserver/login", data={"token": hospitals.tokens[TESTDO]},
                               allow_redirects=False)
    assert r.status_code == 303 and "; Secure" in r.headers["Set-Cookie"]

    cookie = sign_in(hospitals, TESTDO)
    r = hospitals.session.post(SITE + "/logout", headers=cookie, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cleared = r.headers["Set-Cookie"]
    assert cleared.startswith('medperf_token=""') and "Max-Age=-1" in cleared and "HttpOnly" in cleared


def test_sign_in_refuses_a_wrong_token_and_a_form_from_another_site(hospitals):
    r = hospitals.session.post(SITE + "/login", data={"token": "mpa_not-a-token"}, allow_redirects=False)
    assert r.status_code == 401 and "Set-Cookie" not in r.headers and "not valid" in r.text
    r = hospitals.session.post(SITE + "/login", data={"token": hospitals.tokens[TESTDO]},
                               headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"},
                               allow_redirects=False)
    assert r.status_code == 403 and "Set-Cookie" not in r.headers
    r = hospitals.session.post(SITE + "/logout", headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False)
    assert r.status_code == 403 and "Set-Cookie" not in r.headers
    # the page's own form; and one behind a proxy that rewrote Host (Origin no longer matches it)
    for origin in (SITE, "https://registry.hospital.example"):
        r = hospitals.session.post(SITE + "/login", data={"token": hospitals.tokens[TESTDO]},
                                   headers={"Sec-Fetch-Site": "same-origin", "Origin": origin}, allow_redirects=False)
        assert r.status_code == 303
    # a cookie whose token no longer authenticates: the form again, and the cookie is dropped
    r = hospitals.session.get(SITE + "/", headers={"Cookie": "medperf_token=mpa_revoked"})
    assert "no longer valid" in r.text and r.headers["Set-Cookie"].startswith('medperf_token=""')
    assert_no_records(r.text)


def test_a_data_owner_sees_their_dataset_and_results_but_no_other_owners(hospitals):
    html = page(hospitals, TESTDO)
    assert "Signed in as testdo@example.com" in html and "chestxray" in html
    assert "&lt;b&gt;mydata&lt;/b&gt;" in html and DO_DATASET not in html
    assert f"<td>{DO_AUC}</td>" in html and "the results you submitted" in html
    assert hospitals.tokens[TESTDO] not in html  # the page never writes the token back
    for other in (DO2_DATASET, DO2_AUC, UNSUBMITTED_AUC, "alert(1)", "all submitted results"):
        assert other not in html, other
    html = page(hospitals, TESTDO2)
    assert DO2_DATASET in html and DO2_AUC in html and "mydata" not in html and DO_AUC not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and SECRET_METRIC not in html


def test_the_benchmark_owner_sees_the_results_table_of_their_benchmark(hospitals):
    html = page(hospitals, TESTBO)
    assert "all submitted results" in html
    assert f"<td>{DO_AUC}</td>" in html and f"<td>{DO2_AUC}</td>" in html and UNSUBMITTED_AUC not in html
    assert "<th>AUC</th>" in html and "<th>&lt;script&gt;alert(1)&lt;/script&gt;</th>" in html
    assert len(rows(html, "association")) == 2 and rows(html, "dataset") == set()


def test_a_model_owner_sees_the_benchmarks_datasets_the_api_lists_them_but_no_result(hospitals):
    """testmo's model is approved in chestxray: GET /benchmarks/1/datasets/ answers them, so the page names them;
    they own no dataset, decide no request and read no result."""
    html = page(hospitals, TESTMO)
    assert "chestxray" in html
    assert rows(html, "dataset") == rows(html, "association") == rows(html, "result") == set()
    listed = {a["dataset"] for a in hospitals.mo.get("/benchmarks/1/datasets/").json()["results"]}
    shown = {int(x) for x in re.findall(r'<tr class="benchmark-dataset"><td>.*?\(id (\d+)\)', html)}
    assert shown == listed and len(listed) == 2
    for secret in (DO_AUC, DO2_AUC, "Approve"):
        assert secret not in html


def test_an_admin_sees_everything(hospitals):
    html = page(hospitals, TESTADMIN)
    assert "(admin)" in html and "&lt;b&gt;mydata&lt;/b&gt;" in html and DO2_DATASET in html
    assert DO_AUC in html and DO2_AUC in html and "all submitted results" in html


@pytest.mark.parametrize("email", [TESTADMIN, TESTBO, TESTMO, TESTDO, TESTDO2])
def test_the_page_shows_what_the_api_answers_the_same_user(hospitals, email):
    """Each row on the page is one the API lets that user read; results: every submitted one they may read."""
    html = page(hospitals, email)
    api = {TESTADMIN: hospitals.admin, TESTBO: hospitals.bo, TESTMO: hospitals.mo, TESTDO: hospitals.do,
           TESTDO2: hospitals.do2}[email]
    readable: set[int] = set()
    benchmarks = api.get("/benchmarks/").json()["results"]
    for path in ["/me/results/"] + [f"/benchmarks/{b['id']}/results/" for b in benchmarks]:
        r = api.get(path, limit=1000)
        assert r.status_code in (200, 403)
        if r.status_code == 200:
            readable |= {x["id"] for x in r.json()["results"] if x["finalized"]}
    assert rows(html, "result") == readable
    if email == TESTADMIN:
        assert rows(html, "dataset") == {d["id"] for d in api.get("/datasets/", limit=1000).json()["results"]}
        return
    assert rows(html, "dataset") == {d["id"] for d in api.get("/me/datasets/", limit=1000).json()["results"]}
    latest: dict = {}  # the latest row of each pair the API lists
    for a in api.get("/me/datasets/associations/", limit=1000).json()["results"]:
        pair = (a["benchmark"], a["dataset"])
        latest[pair] = max(latest.get(pair, a), a, key=lambda x: (x["created_at"], x["id"]))
    assert rows(html, "association") == {a["id"] for a in latest.values()}


def test_signing_in_through_a_browser_like_cookie_jar_over_loopback():
    """A real client (requests' cookie jar) against the real server: sign in, read the page, sign out."""
    with live_server() as srv:
        browser = requests.Session()
        r = browser.post(srv.url + "/login", data={"token": srv.tokens[TESTBO]})
        assert r.status_code == 200 and "Signed in as testbo@example.com" in r.text and "chestxray" in r.text
        assert r.history[0].status_code == 303 and "medperf_token" in browser.cookies
        r = browser.post(srv.url + "/logout")
        assert "Sign in" in r.text and "chestxray" not in r.text and "medperf_token" not in browser.cookies


def test_no_web_turns_the_page_off(tmp_path):
    from server.app import make_app
    from server.settings import Settings

    session = inprocess_session(make_app(Settings(db_url=str(tmp_path / "s.db"), web_ui=False)))
    assert session.get("http://x/").status_code == 404
    assert session.post("http://x/login", data={"token": "x"}).status_code == 404
    assert session.post("http://x/logout").status_code == 404
    assert session.get("http://x/api/v0/schema").status_code == 200
