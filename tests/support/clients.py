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
    """runner.cli.real_clients(environ, sleep=sleep): everything as the CLI builds it, but the pauses.

    `timeout` (connect, read) shortens the registry client's socket timeouts when a test stalls answers.
    """
    clients = real_clients(environ, sleep=sleep, **real_options)
    if timeout is None:
        return clients

    def api(server, state):
        client = clients.api(server, state)
        client.timeout = timeout
        return client

    return dataclasses.replace(clients, api=api)
