"""The real server on a loopback socket (cheroot), SQLite and PostgreSQL: the flow, concurrency, races."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support.server import TESTBO, TESTDO, TESTDO2, live_server


def test_tutorial_over_loopback(db_url):
    with live_server(db_url) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        do, bo = requests.Session(), requests.Session()
        do.headers.update(srv.headers(TESTDO))
        bo.headers.update(srv.headers(TESTBO))
        r = do.post(srv.api + "/datasets/", json={
            "name": "mytestdata", "description": "d", "location": "l", "input_data_hash": "raw", "generated_uid": "raw",
            "data_preparation_mlcube": 1, "split_seed": 0, "submitted_as_prepared": False})
        assert r.status_code == 201 and r.json()["id"] == 1
        r = do.put(srv.api + "/datasets/1/", json={"input_data_hash": "raw", "generated_uid": "prep",
                                                  "generated_metadata": {"num_cases": 4}, "state": "OPERATION"})
        assert r.json()["state"] == "OPERATION"
        assert do.post(srv.api + "/results/", json={"benchmark": 1, "model": 1, "dataset": 1}).status_code == 201
        assert do.post(srv.api + "/datasets/benchmarks/", json={
            "dataset": 1, "benchmark": 1, "metadata": {"test_result": {"AUC": 0.7}}}).status_code == 201
        assert do.get(srv.api + "/benchmarks/1/models/").status_code == 403
        assert bo.put(srv.api + "/datasets/1/benchmarks/1/", json={"approval_status": "APPROVED"}).status_code == 200
        models = do.get(srv.api + "/benchmarks/1/models/").json()
        assert [m["model"] for m in models["results"]] == [2]
        assert models["next"] is None
        r = do.post(srv.api + "/results/", json={"benchmark": 1, "model": 2, "dataset": 1})
        assert r.status_code == 201
        r = do.put(f"{srv.api}/results/{r.json()['id']}/", json={"results": {"AUC": 0.9}, "metadata": {"partial": False}})
        assert r.json()["finalized"] is True
        r = requests.get(srv.api + "/me/")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_sixteen_concurrent_clients_get_no_errors(db_url):
    with live_server(db_url, threads=8) as srv:
        do = requests.Session()
        do.headers.update(srv.headers(TESTDO))
        do.post(srv.api + "/datasets/", json={"name": "d", "input_data_hash": "a", "generated_uid": "a", "split_seed": 0,
                                              "data_preparation_mlcube": 1, "submitted_as_prepared": False})
        do.put(srv.api + "/datasets/1/", json={"generated_uid": "b", "state": "OPERATION"})

        def client(i):
            s = requests.Session()
            s.headers.update(srv.headers(TESTDO))
            codes = []
            for _ in range(8):
                codes.append(s.get(srv.api + "/benchmarks/1/").status_code)
                codes.append(s.get(srv.api + "/me/results/").status_code)
                codes.append(s.post(srv.api + "/results/", json={"benchmark": 1, "model": 1, "dataset": 1}).status_code)
            return codes

        with ThreadPoolExecutor(16) as pool:
            codes = [c for cs in pool.map(client, range(16)) for c in cs]
        assert sorted(set(codes)) == [200, 201]
        assert codes.count(201) == 16 * 8
        assert do.get(srv.api + "/me/results/").json()["count"] == 16 * 8
        ids = [r["id"] for r in do.get(srv.api + "/me/results/", params={"limit": 500}).json()["results"]]
        assert sorted(ids) == list(range(1, 16 * 8 + 1))


def test_racing_association_requests_leave_one_open_request(db_url):
    with live_server(db_url, threads=8) as srv:
        do2 = requests.Session()
        do2.headers.update(srv.headers(TESTDO2))
        do2.post(srv.api + "/datasets/", json={"name": "d", "input_data_hash": "a", "generated_uid": "a",
                                               "split_seed": 0, "data_preparation_mlcube": 1,
                                               "submitted_as_prepared": False})
        do2.put(srv.api + "/datasets/1/", json={"generated_uid": "b", "state": "OPERATION"})

        def request(_):
            s = requests.Session()
            s.headers.update(srv.headers(TESTDO2))
            return s.post(srv.api + "/datasets/benchmarks/", json={"dataset": 1, "benchmark": 1, "metadata": {}}).status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(request, range(12)))
        assert sorted(codes) == [201] + [400] * 11
        assert len(do2.get(srv.api + "/datasets/1/benchmarks/1/").json()) == 1
