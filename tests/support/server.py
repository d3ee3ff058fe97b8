"""The real registry server for other areas' tests: on a loopback port (cheroot) or in-process (no socket).

    with live_server() as srv:                 # fresh temp SQLite, seeded with the tutorial world
        requests.get(srv.api + "/me/", headers={"Authorization": f"Bearer {srv.tokens['testdo@example.com']}"})

    session = inprocess_session(srv.app)       # same app, no socket: any http:// URL reaches it

The launchers and the seeded users live in the server package (server.loopback, server.seed), which the
benches use too; this module adds the requests transport that reaches an app without a socket.
"""

from __future__ import annotations

import http

import requests
from requests.structures import CaseInsensitiveDict

from server.inprocess import wsgi_call
from server.loopback import LiveServer, inprocess_server, live_server
from server.seed import TESTADMIN, TESTBO, TESTDO, TESTDO2, TESTMO

__all__ = ["TESTADMIN", "TESTBO", "TESTDO", "TESTDO2", "TESTMO", "LiveServer", "WSGIAdapter", "inprocess_server",
           "inprocess_session", "live_server"]


class WSGIAdapter(requests.adapters.BaseAdapter):
    """A requests transport adapter that hands each request to a WSGI app in this process."""

    def __init__(self, app):
        super().__init__()
        self.app = app

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        status, headers, data = wsgi_call(self.app, request.method, request.url,
                                          headers=dict(request.headers), body=body)
        response = requests.Response()
        response.status_code = status
        response.reason = http.HTTPStatus(status).phrase
        response.headers = CaseInsensitiveDict(headers)
        response._content = data
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        response.connection = self
        return response

    def close(self):
        pass


def inprocess_session(app) -> requests.Session:
    """A requests.Session whose http:// and https:// requests go straight to `app` (no socket)."""
    session = requests.Session()
    adapter = WSGIAdapter(app)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
