"""The web page in headless Chromium (Debian's chromium driven by Selenium through Debian's chromedriver): the
benchmark owner signs in, reads the results table and chart and the pending request by name, clicks Approve and
sees the flash and the new status; the data owner's next `medperf-apply plan` (in-process, against the same
server) no longer waits at the approval gate. One browser for the module; screenshots are written under
$MEDPERF_ARTIFACTS_DIR (default: the test's temp dir)."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import pytest
import requests

from runner.cli import main
from runner.hashing import folders_hash
from tests.support.server import TESTBO, TESTDO, TESTDO2, live_server

DATASET = "mytestdata <b>&amp;</b><script>document.title='x'</script>"  # markup the browser must show as text
MANIFEST = """\
apiVersion: medperf-apply/v1
kind: DataOwner
server:
  url: {{ env.MEDPERF_SERVER }}
  token_env: MEDPERF_TOKEN
datasets:
  - name: "NAME"
    description: A tutorial dataset
    location: My machine
    data_path: data/images
    labels_path: data/labels
    prepare_with: {benchmark: chestxray}
    state: operational
    consent: {statistics: true, compatibility_results: true, results: true}
    benchmarks:
      - benchmark: chestxray
        association: approved
        models: all
        results: submitted
""".replace("NAME", DATASET.replace('"', '\\"'))
WAIT_S = 20


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MEDPERF_ARTIFACTS_DIR") or tmp_path_factory.mktemp("artifacts")) / "web"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    """One headless Chromium for the module (each test signs in on its own)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--window-size=1280,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def screenshot(driver, path: Path) -> Path:
    """The whole page (beyond the window) as PNG."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def wait_for(driver, css: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(seen.presence_of_element_located((By.CSS_SELECTOR, css)))


def api(srv, email: str, method: str, path: str, body=None) -> dict:
    r = requests.request(method, srv.api + path, json=body, headers=srv.headers(email), timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()


def operational_dataset(srv, email: str, name: str, raw_hash: str) -> int:
    ds = api(srv, email, "POST", "/datasets/", {
        "name": name, "description": "A tutorial dataset", "location": "My machine", "input_data_hash": raw_hash,
        "generated_uid": raw_hash, "data_preparation_mlcube": 1, "split_seed": 0, "submitted_as_prepared": False,
        "for_test": False, "generated_metadata": {}, "user_metadata": {}})
    api(srv, email, "PUT", f"/datasets/{ds['id']}/", {"generated_uid": "prepared-" + raw_hash,
                                                       "generated_metadata": {"num_cases": 3}, "state": "OPERATION"})
    return ds["id"]


def submitted_result(srv, email: str, dataset: int, model: int, metrics: dict):
    r = api(srv, email, "POST", "/results/", {
        "name": f"b1m{model}d{dataset}", "benchmark": 1, "model": model, "dataset": dataset, "results": {},
        "metadata": {}, "user_metadata": {}, "model_report": {}, "evaluation_report": {}})
    api(srv, email, "PUT", f"/results/{r['id']}/", {"results": metrics, "metadata": {"partial": False}})


@pytest.fixture
def site_world(tmp_path):
    """The seeded server; testdo2's dataset approved with both models' results; testdo's dataset (the manifest's,
    its raw folders on disk) asked to join chestxray with the reference model's result submitted: PENDING."""
    work = tmp_path / "site"
    for folder, files in (("data/images", {"img0.png": b"\x89PNG a", "img1.png": b"\x89PNG b"}),
                          ("data/labels", {"labels.csv": b"img0.png,1\nimg1.png,0\n"})):
        (work / folder).mkdir(parents=True)
        for name, content in files.items():
            (work / folder / name).write_bytes(content)
    (work / "site.yaml").write_text(MANIFEST)
    raw_hash = folders_hash([work / "data/images", work / "data/labels"], workers=1)
    with live_server() as srv:
        other = operational_dataset(srv, TESTDO2, "hospital-two", "f" * 64)
        api(srv, TESTDO2, "POST", "/datasets/benchmarks/", {"dataset": other, "benchmark": 1,
                                                             "approval_status": "PENDING", "metadata": {}})
        api(srv, TESTBO, "PUT", f"/datasets/{other}/benchmarks/1/", {"approval_status": "APPROVED"})
        submitted_result(srv, TESTDO2, other, 1, {"AUC": 0.71234567, "Accuracy": 0.6})
        submitted_result(srv, TESTDO2, other, 2, {"AUC": 0.91234567, "Accuracy": 0.8})
        mine = operational_dataset(srv, TESTDO, DATASET, raw_hash)
        submitted_result(srv, TESTDO, mine, 1, {"AUC": 0.8125, "Accuracy": 0.75})
        api(srv, TESTDO, "POST", "/datasets/benchmarks/", {
            "dataset": mine, "benchmark": 1, "approval_status": "PENDING",
            "metadata": {"test_result": {"AUC": 0.8125, "Accuracy": 0.75}}})
        yield srv, work, mine


def plan(srv, work: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["plan", str(work / "site.yaml"), "--state-dir", str(work / "state")], stdout=out, stderr=err,
                stdin=io.StringIO(""), environ={"MEDPERF_TOKEN": srv.tokens[TESTDO], "MEDPERF_SERVER": srv.url})
    return code, out.getvalue() + err.getvalue()


def test_the_benchmark_owner_approves_in_the_browser_and_the_data_owner_plan_sees_it(browser, site_world, artifacts):
    from selenium.webdriver.common.by import By

    srv, work, mine = site_world
    code, before = plan(srv, work)
    assert code == 2 and "? await approval" in before, before

    browser.delete_all_cookies()
    browser.get(srv.url + "/")
    token_field = wait_for(browser, "input[name=token]")
    screenshot(browser, artifacts / "1-sign-in.png")
    token_field.send_keys(srv.tokens[TESTBO])
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait_for(browser, "#pending")
    assert "Signed in as testbo@example.com" in browser.find_element(By.CSS_SELECTOR, ".who").text

    # the results table: models x datasets, 4 digits, names with ids, and the chart beside it
    matrix = browser.find_element(By.CSS_SELECTOR, "#benchmark-1 table.matrix")
    text = matrix.text
    assert "AUC" in text and "chestxray_cnn (id 1)" in text and "chestxray_linear (id 2)" in text
    assert "0.7123" in text and "0.9123" in text and "0.8125" in text and "0.71234567" not in text
    assert f"{DATASET} (id {mine})" in text and "hospital-two" in text
    bars = browser.find_elements(By.CSS_SELECTOR, "#benchmark-1 svg.chart rect")
    assert len(bars) >= 3 and all(b.size["height"] > 0 for b in bars)

    # the pending request: the dataset by name and id, who asked, the compatibility metrics
    row = browser.find_element(By.CSS_SELECTOR, "table.pending tr[id^=pending-]")
    assert f"{DATASET} (id {mine})" in row.text and "chestxray (id 1)" in row.text
    assert "testdo@example.com" in row.text and "AUC = 0.8125" in row.text and "Accuracy = 0.7500" in row.text
    assert browser.find_elements(By.TAG_NAME, "b") == browser.find_elements(By.TAG_NAME, "script") == []  # as text
    assert browser.title == "medperf-apply registry"
    screenshot(browser, artifacts / "2-benchmark-owner-page.png")

    row.find_element(By.CSS_SELECTOR, "button.approve").click()
    flash = wait_for(browser, "#flash.ok")
    assert f"The association of dataset {DATASET} ({mine}) with benchmark chestxray (1) is now APPROVED." == flash.text
    assert browser.current_url.endswith("/#pending")
    assert browser.find_elements(By.CSS_SELECTOR, "#pending") == []  # nothing waits any more
    status = browser.find_element(By.CSS_SELECTOR, "#benchmark-1 table.datasets").text
    assert re.search(rf"{re.escape(DATASET)} \(id {mine}\) APPROVED", status), status
    screenshot(browser, artifacts / "3-approved.png")

    browser.refresh()  # the flash is shown once
    wait_for(browser, ".who")
    assert browser.find_elements(By.CSS_SELECTOR, "#flash") == []

    code, after = plan(srv, work)
    assert "? await approval" not in after and "= await approval" in after, after
    assert code in (0, 2), after


def test_a_form_posted_from_another_page_is_refused_in_the_browser(browser, site_world, artifacts):
    """A signed-in browser posting the decide form without the page's CSRF token gets 403; nothing changes."""
    from selenium.webdriver.common.by import By

    srv, _work, mine = site_world
    browser.delete_all_cookies()
    browser.get(srv.url + "/")
    wait_for(browser, "input[name=token]").send_keys(srv.tokens[TESTBO])
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait_for(browser, "#pending")
    browser.execute_script("document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'forged');")
    browser.find_element(By.CSS_SELECTOR, "table.pending button.approve").click()
    wait_for(browser, "p.message")
    assert "did not come from this page" in browser.find_element(By.CSS_SELECTOR, "p.message").text
    screenshot(browser, artifacts / "4-forged-form-refused.png")
    latest = api(srv, TESTBO, "GET", f"/datasets/{mine}/benchmarks/1/")[-1]
    assert latest["approval_status"] == "PENDING"
