#!/usr/bin/env python3
"""A stand-in for GitHub's `gh api` on PATH: keeps a pull request's comments in a JSON file ($FAKE_GH_STATE) and
records every call there. Only what the workflow uses: GET .../issues/N/comments (with --jq selecting by the body's
start), POST .../issues/N/comments and PATCH .../issues/comments/ID with `-F body=@FILE`."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state_file = Path(os.environ["FAKE_GH_STATE"])
    state = json.loads(state_file.read_text()) if state_file.exists() else {"comments": [], "calls": [], "next": 100}
    if not argv or argv[0] != "api":
        print(f"fake gh: only `gh api` is faked, not {argv}", file=sys.stderr)
        return 2
    method, path, body, jq = "GET", None, None, None
    args = iter(argv[1:])
    for a in args:
        if a in ("--method", "-X"):
            method = next(args)
        elif a in ("-F", "--field", "-f", "--raw-field"):
            key, _, value = next(args).partition("=")
            if a in ("-F", "--field") and value.startswith("@"):
                value = Path(value[1:]).read_text()
            if key == "body":
                body = value
        elif a in ("--jq", "-q"):
            jq = next(args)
        elif a == "--paginate":
            pass
        elif path is None:
            path = a
        else:
            print(f"fake gh: unexpected argument {a}", file=sys.stderr)
            return 2
    if body is not None and method == "GET":
        method = "POST"  # gh's default when fields are given
    state["calls"].append({"method": method, "path": path, "body": body})
    out: object
    if method == "GET" and re.fullmatch(r"repos/[^/]+/[^/]+/issues/\d+/comments", path or ""):
        out = state["comments"]
        if jq:
            m = re.fullmatch(r'\.\[\] \| select\(\.body \| startswith\("(.*)"\)\) \| \.id', jq)
            if not m:
                print(f"fake gh: unsupported --jq {jq}", file=sys.stderr)
                return 2
            print("\n".join(str(c["id"]) for c in state["comments"] if c["body"].startswith(m.group(1))))
            out = None
    elif method == "POST" and re.fullmatch(r"repos/[^/]+/[^/]+/issues/\d+/comments", path or ""):
        state["next"] += 1
        out = {"id": state["next"], "body": body}
        state["comments"].append(out)
    elif method == "PATCH" and (m := re.fullmatch(r"repos/[^/]+/[^/]+/issues/comments/(\d+)", path or "")):
        found = [c for c in state["comments"] if c["id"] == int(m.group(1))]
        if not found:
            print("gh: Not Found (HTTP 404)", file=sys.stderr)
            return 1
        found[0]["body"] = body
        out = found[0]
    else:
        print(f"fake gh: {method} {path} is not faked", file=sys.stderr)
        return 2
    if out is not None:
        print(json.dumps(out))
    state_file.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
