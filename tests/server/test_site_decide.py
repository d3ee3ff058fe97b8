"""The web page's benchmark-owner side, in-process: pending requests by name with who asked and the compatibility
metrics, Approve / Reject forms guarded by a per-session CSRF token (a POST without it, with a wrong one or from
another site gets 403 and changes nothing), the API's own rules behind the buttons, a 303 back with a flash
message; names escaped; metrics to 4 digits; the results matrix and its SVG chart; nothing fetched from outside."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.routes import site
from tests.support.server import TESTADMIN, TESTBO, TESTDO, TESTDO2, TESTMO

SITE = "http://testserver"
EVIL = "<script>alert('x')</script>"
TEMPLATES = Path(site.__file__).resolve().parents[1] / "templates"


@pytest.fixture
def asking(world):
    """testdo's dataset named EVIL asks to join chestxray (PENDING, with its compatibility-test metrics); testdo2's
    dataset is approved and both have submitted results of models 1 and 2 with long decimals."""
    ds = world.dataset(world.do, name=EVIL)
    r = world.do.post("/datasets/benchmarks/", {"dataset": ds["id"], "benchmark": 1, "approval_status": "PENDING",
                                                "metadata": {"test_result": {"AUC": 0.812345678, "Accuracy": 0.75}}})
    assert r.status_code == 201, r.text
    other = world.dataset(world.do2, name="hospital-two")
    world.associate(world.do2, other["id"], approve_with=world.bo)
    for owner, dataset, model, auc in ((world.do, ds["id"], 1, 0.123456789), (world.do2, other["id"], 1, 0.5),
                                       (world.do2, other["id"], 2, 0.987654321)):
        r = world.result(owner, dataset, model)
        assert r.status_code == 201, r.text
        r = owner.put(f"/results/{r.json()['id']}/", {"results": {"AUC": auc}, "metadata": {"partial": False}})
        assert r.status_code == 200, r.text
    world.evil, world.other = ds["id"], other["id"]
    return world


def sign_in(world, email: str) -> dict:
    r = world.session.post(SITE + "/login", data={"token": world.tokens[email]}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return {"Cookie": r.headers["Set-Cookie"].split(";", 1)[0]}


def get_page(world, cookie: dict) -> str:
    r = world.session.get(SITE + "/", headers=cookie)
    assert r.status_code == 200
    return r.text


def csrf_of(html: str) -> str:
    (token,) = set(re.findall(r'name="csrf_token" value="([0-9a-f]{64})"', html))
    return token


def decide(world, cookie: dict, decision: str, dataset: int, csrf: str | None, **headers):
    form = {"dataset": str(dataset), "benchmark": "1", "decision": decision}
    if csrf is not None:
        form["csrf_token"] = csrf
    return world.session.post(SITE + "/decide", data=form, headers={**cookie, **headers}, allow_redirects=False)


def latest_status(world, dataset: int) -> str:
    return world.bo.get(f"/datasets/{dataset}/benchmarks/1/").json()[-1]["approval_status"]


def test_the_benchmark_owner_sees_who_asked_for_which_dataset_and_its_metrics(asking):
    html = get_page(asking, sign_in(asking, TESTBO))
    row = re.search(r'<tr id="pending-\d+">(.*?)</tr>', html, re.S).group(1)
    assert "chestxray <small class=\"id\">(id 1)</small>" in row
    assert f"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; <small class=\"id\">(id {asking.evil})</small>" in row
    assert TESTDO in row and "AUC = 0.8123" in row and "Accuracy = 0.7500" in row and "UTC" in row
    assert row.count('action="/decide"') == 2 and ">Approve</button>" in row and ">Reject</button>" in row
    assert EVIL not in html and "<script" not in html  # escaped everywhere: rows, tables, chart labels
    # per benchmark: the reference model marked, the second model with its priority and approval
    models = re.search(r'<table class="models">(.*?)</table>', html, re.S).group(1)
    assert '<td>chestxray_cnn <small class="id">(id 1)</small></td><td><strong>reference model</strong>' in models
    assert models.index("(id 1)") < models.index("(id 2)") and "APPROVED" in models


def test_the_results_matrix_has_4_digits_and_an_svg_chart_per_metric(asking):
    html = get_page(asking, sign_in(asking, TESTBO))
    matrix = re.search(r'<table class="matrix">(.*?)</table>', html, re.S).group(1)
    assert "<caption>AUC" in matrix
    assert '<td class="num">0.1235</td>' in matrix and '<td class="num">0.9877</td>' in matrix
    assert '<td class="num">0.5000</td>' in matrix and "0.123456789" not in html
    svg = re.search(r'<svg class="chart".*?</svg>', html, re.S).group(0)
    assert len(re.findall(r"<rect [^>]*><title>", svg)) == 3  # one bar per (model, dataset) result
    assert "hospital-two (" in svg and "&lt;script&gt;" in svg and "AUC" in svg


def test_approve_redirects_with_a_flash_and_the_api_sees_it(asking):
    cookie = sign_in(asking, TESTBO)
    csrf = csrf_of(get_page(asking, cookie))
    r = decide(asking, cookie, "approve", asking.evil, csrf)
    assert r.status_code == 303 and r.headers["Location"] == "/#pending"
    assert latest_status(asking, asking.evil) == "APPROVED"
    flash = r.headers["Set-Cookie"].split(";", 1)[0]
    html = get_page(asking, {"Cookie": f"{cookie['Cookie']}; {flash}"})
    assert '<p id="flash" class="flash ok" role="status">The association of dataset &lt;script&gt;' in html
    assert "with benchmark chestxray (1) is now APPROVED." in html
    assert 'id="pending"' not in html  # nothing waits any more
    # the flash is shown once: the response drops its cookie
    r = asking.session.get(SITE + "/", headers={"Cookie": f"{cookie['Cookie']}; {flash}"})
    assert r.headers["Set-Cookie"].startswith('medperf_flash=""')
    # the data owner sees the decision on their own association
    html = get_page(asking, sign_in(asking, TESTDO))
    row = re.search(r'<tr id="association-\d+">(.*?)</tr>', html, re.S).group(1)
    assert '<td class="APPROVED">APPROVED' in row and "<td>you</td>" in row


def test_reject_goes_through_the_same_rules(asking):
    cookie = sign_in(asking, TESTBO)
    r = decide(asking, cookie, "reject", asking.evil, csrf_of(get_page(asking, cookie)))
    assert r.status_code == 303 and latest_status(asking, asking.evil) == "REJECTED"
    # deciding again: the API's rule refuses (only a pending request), the flash says so, nothing changes
    r = decide(asking, cookie, "approve", asking.evil, csrf_of(get_page(asking, cookie)))
    assert r.status_code == 303 and latest_status(asking, asking.evil) == "REJECTED"
    flash = r.headers["Set-Cookie"].split(";", 1)[0]
    html = get_page(asking, {"Cookie": f"{cookie['Cookie']}; {flash}"})
    assert 'class="flash error"' in html and "only if it is pending" in html


@pytest.mark.parametrize("case", ["missing", "wrong", "another session's", "another user's"])
def test_a_post_without_the_session_csrf_token_is_403_and_changes_nothing(asking, case):
    cookie = sign_in(asking, TESTBO)
    csrf = {
        "missing": None,
        "wrong": "0" * 64,
        "another session's": csrf_of(get_page(asking, sign_in(asking, TESTBO))),  # same user, a new sign-in
        "another user's": csrf_of(get_page(asking, sign_in(asking, TESTADMIN))),
    }[case]
    r = decide(asking, cookie, "approve", asking.evil, csrf)
    assert r.status_code == 403 and "Set-Cookie" not in r.headers and "out of date" in r.text
    assert latest_status(asking, asking.evil) == "PENDING"


def test_a_post_from_another_site_or_without_a_session_is_403(asking):
    cookie = sign_in(asking, TESTBO)
    csrf = csrf_of(get_page(asking, cookie))
    r = decide(asking, cookie, "approve", asking.evil, csrf, **{"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = decide(asking, {}, "approve", asking.evil, csrf)
    assert r.status_code == 403 and "Sign in first" in r.text
    r = decide(asking, {"Cookie": "medperf_token=abc.mpa_revoked"}, "approve", asking.evil, csrf)
    assert r.status_code == 403
    assert latest_status(asking, asking.evil) == "PENDING"
    r = asking.session.get(SITE + "/decide", headers=cookie)
    assert r.status_code == 405


def test_users_the_rules_refuse_get_no_buttons_and_a_refusal(asking):
    # the data owner's own request: self-approval is refused by the API's rule, so no buttons either
    refusals = {TESTDO: "Same user cannot approve the association request",  # what the API's PUT answers them
                TESTDO2: "You do not have permission to perform this action.",
                TESTMO: "You do not have permission to perform this action."}
    for email, refusal in refusals.items():
        cookie = sign_in(asking, email)
        html = get_page(asking, cookie)
        assert 'action="/decide"' not in html and 'id="pending"' not in html
        r = decide(asking, cookie, "approve", asking.evil, csrf_of(html))
        assert r.status_code == 303
        flash = r.headers["Set-Cookie"].split(";", 1)[0]
        html = get_page(asking, {"Cookie": f"{cookie['Cookie']}; {flash}"})
        assert 'class="flash error"' in html and refusal in html, email
        api = {TESTDO: asking.do, TESTDO2: asking.do2, TESTMO: asking.mo}[email]
        r = api.put(f"/datasets/{asking.evil}/benchmarks/1/", {"approval_status": "APPROVED"})
        assert r.status_code in (400, 403) and refusal in r.text, r.text
    assert latest_status(asking, asking.evil) == "PENDING"
    # an admin may decide (as through the API)
    html = get_page(asking, sign_in(asking, TESTADMIN))
    assert 'action="/decide"' in html


def test_a_malformed_form_is_400(asking):
    cookie = sign_in(asking, TESTBO)
    csrf = csrf_of(get_page(asking, cookie))
    r = decide(asking, cookie, "maybe", asking.evil, csrf)
    assert r.status_code == 400
    r = asking.session.post(SITE + "/decide", data={"csrf_token": csrf, "decision": "approve"}, headers=cookie,
                            allow_redirects=False)
    assert r.status_code == 400 and latest_status(asking, asking.evil) == "PENDING"


def test_the_templates_and_the_page_fetch_nothing_from_outside(asking):
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert "://" not in text and not re.search(r"""\b(src|href)=["']//""", text), template.name
        assert "<script" not in text and "<link" not in text and "<img" not in text, template.name
    html = get_page(asking, sign_in(asking, TESTBO))
    assert "://" not in html and " src=" not in html
