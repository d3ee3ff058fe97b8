"""Trust tests: crash resume, flaky registry, concurrent runs, bad input, privacy proof,
server hardening. Run them alone with `pytest tests/trust -s` to see the figures they print."""
