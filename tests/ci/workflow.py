"""Run a GitHub Actions workflow's `run:` steps as GitHub does (bash -eo pipefail, one script per step) with a
GitHub-like environment: GITHUB_OUTPUT / GITHUB_PATH / GITHUB_STEP_SUMMARY files, `${{ ... }}` expressions
substituted from given secrets, vars and github contexts, `if:` evaluated; `uses:` steps are recorded, not run."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class StepRun:
    name: str
    code: int | None  # None: not run (its `if:` was false), or a `uses:` step
    output: str = ""
    uses: str | None = None


@dataclass
class JobRun:
    steps: list[StepRun] = field(default_factory=list)
    summary: str = ""

    @property
    def failed(self) -> bool:
        return any(s.code not in (None, 0) for s in self.steps)

    def step(self, name: str) -> StepRun:
        return next(s for s in self.steps if s.name == name)

    @property
    def output(self) -> str:
        return "".join(s.output for s in self.steps)


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:  # YAML 1.1 reads the key `on` as true
        data["on"] = data.pop(True)
    return data


class Contexts:
    """The values `${{ ... }}` may name: secrets.X, vars.X, github.X (dotted), steps.ID.outputs.X."""

    def __init__(self, secrets: dict, variables: dict, github: dict):
        self.secrets, self.vars, self.github = secrets, variables, github
        self.steps: dict[str, dict[str, str]] = {}

    def value(self, name: str) -> str:
        if name.startswith("'") and name.endswith("'"):
            return name[1:-1]
        head, _, rest = name.partition(".")
        if head == "secrets":
            return self.secrets.get(rest, "")
        if head == "vars":
            return self.vars.get(rest, "")
        if head == "github":
            node = self.github
            for part in rest.split("."):
                node = node.get(part, "") if isinstance(node, dict) else ""
            return "" if isinstance(node, dict) else str(node)
        if head == "steps":
            step_id, _, out = rest.partition(".outputs.")
            return self.steps.get(step_id, {}).get(out, "")
        raise AssertionError(f"the workflow uses an expression this runner does not know: {name}")

    def expr(self, text: str) -> str:
        """`a || 'default'`: the first non-empty term, as GitHub evaluates it for strings."""
        for term in (t.strip() for t in text.split("||")):
            value = self.value(term)
            if value:
                return value
        return ""

    def substitute(self, text: str) -> str:
        return EXPR.sub(lambda m: self.expr(m.group(1)), str(text))

    def condition(self, text: str, failed: bool) -> bool:
        """An `if:`: always(), success(), failure(), ==, !=, &&, || over the contexts above."""
        text = EXPR.sub(lambda m: m.group(1), str(text))
        names = re.compile(r"'[^']*'|(?:secrets|vars|github|steps)\.[\w.-]+")
        py = names.sub(lambda m: repr(self.value(m.group(0))), text)
        py = py.replace("always()", "True").replace("success()", str(not failed)).replace("failure()", str(failed))
        py = py.replace("&&", " and ").replace("||", " or ").replace("!", " not ").replace(" not =", " !=")
        uses_always = "always()" in text or "failure()" in text
        result = bool(eval(py, {"__builtins__": {}}))  # noqa: S307  (test-only, the workflow's own text)
        return result and (uses_always or not failed)


def run_job(workflow: dict, job: str, *, workdir: Path, contexts: Contexts, base_env: dict[str, str],
            timeout: float = 120) -> JobRun:
    """Run `job`'s steps in order in `workdir`; a failing step skips the rest but those with always()."""
    spec = workflow["jobs"][job]
    temp = workdir.parent / "runner-temp"
    temp.mkdir(exist_ok=True)
    files = {k: temp / f"{k.lower()}" for k in ("GITHUB_STEP_SUMMARY", "GITHUB_PATH")}
    for f in files.values():
        f.write_text("")
    result = JobRun()
    failed = False
    for i, step in enumerate(spec["steps"]):
        name = step.get("name") or step.get("uses") or f"step {i}"
        if "if" in step and not contexts.condition(step["if"], failed):
            result.steps.append(StepRun(name, None))
            continue
        if failed and "if" not in step:
            result.steps.append(StepRun(name, None))
            continue
        if "uses" in step:
            result.steps.append(StepRun(name, None, uses=step["uses"]))
            continue
        output_file = temp / f"output-{i}"
        output_file.write_text("")
        env = dict(base_env)
        for layer in (workflow.get("env") or {}, spec.get("env") or {}, step.get("env") or {}):
            env.update({k: contexts.substitute(v) for k, v in layer.items()})
        extra_path = [p for p in files["GITHUB_PATH"].read_text().splitlines() if p]
        env.update(
            GITHUB_OUTPUT=str(output_file), RUNNER_TEMP=str(temp), GITHUB_WORKSPACE=str(workdir),
            PATH=os.pathsep.join([*reversed(extra_path), base_env["PATH"]]),
            **{k: str(v) for k, v in files.items()},
        )
        script = temp / f"step-{i}.sh"
        script.write_text(contexts.substitute(step["run"]))
        p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        result.steps.append(StepRun(name, p.returncode, p.stdout + p.stderr))
        if "id" in step:
            contexts.steps[step["id"]] = dict(
                line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
        failed = failed or p.returncode != 0
    result.summary = files["GITHUB_STEP_SUMMARY"].read_text()
    return result
