"""Tests of the runner infrastructure: folder hash, state dir, privacy allowlist, registry client."""
