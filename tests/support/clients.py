"""The CLI's real clients, with the pauses recorded instead of slept: the registry client's back-off between
retries and `apply --wait`'s polls go through one `Pauses`, so a test checks the delays the runner chose
without waiting them out.

    pauses = Pauses()
    main([...], clients=real_clients_pausing(environ, pauses))
    assert pauses == [...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from runner.cli import real_clients
from runner.clients.api import ApiClient
from runner.clients.auth import read_token


class Pauses(list):
    """A sleep that records each pause (seconds) and returns at once; `then(n)` runs after the n-th pause."""

    def __init__(self, then: Callable[[int], None] | None = None):
        super().__init__()
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.then is not None:
            self.then(len(self))


def real_clients_pausing(environ: Mapping[str, str], sleep: Callable[[float], None],
                         *, timeout: tuple[float, float] | None = None, **real_options):
    """runner.cli.real_clients(environ), whose registry client sleeps with `sleep`.

    The client keeps everything real_clients wires into it (the privacy check and the ledger before every body,
    the retry policy); `timeout` (connect, read) shortens its socket timeouts when a test stalls answers.
    """
    base = real_clients(environ, **real_options)

    def api(server, state):
        real = base.api(server, state)
        real.close()  # only its wiring is kept: the same URL, token and before_send, another sleep
        return ApiClient(real.base_url, read_token(server, environ), before_send=real.before_send, sleep=sleep,
                         timeout=timeout or real.timeout, max_attempts=real.max_attempts,
                         backoff_base=real.backoff_base, backoff_cap=real.backoff_cap)

    return dataclasses.replace(base, api=api, sleep=sleep)
