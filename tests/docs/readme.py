"""Read README.md the way a newcomer does: the commands it shows and the manifest reference table."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PROGRAMS = ("medperf-apply", "medperf-server", "make")


@dataclass(frozen=True)
class Command:
    program: str
    args: tuple[str, ...]
    line: int
    text: str

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.text}"


def code_texts(markdown: str) -> list[tuple[int, str]]:
    """(line number, text) of every line of a fenced block and of every inline code span outside them."""
    out: list[tuple[int, str]] = []
    fenced = False
    prose: list[tuple[int, str]] = []  # the current paragraph: a code span may continue on the next line

    def flush() -> None:
        if prose:
            text = " ".join(line.strip() for _, line in prose)
            out.extend((prose[0][0], span) for span in re.findall(r"`([^`]+)`", text))
            prose.clear()

    for n, line in enumerate(markdown.splitlines(), 1):
        if line.lstrip().startswith("```"):
            flush()
            fenced = not fenced
            continue
        if fenced:
            out.append((n, line))
        elif line.strip() and not line.lstrip().startswith(("- ", "| ")):
            prose.append((n, line))
        else:
            flush()
            if line.strip():
                prose.append((n, line))
    flush()
    return out


def _words(text: str) -> list[str]:
    text = re.sub(r"\s#\s.*$", "", " " + text).strip()  # a trailing shell comment
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in prose: plain words are enough here
        return text.split()


def commands(markdown: str) -> list[Command]:
    """Every invocation of medperf-apply, medperf-server or make shown in the README's code."""
    found = []
    for n, text in code_texts(markdown):
        for part in re.split(r"\s(?:&&|\|\||;|\|)\s", text):
            words = _words(part)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):  # VAR=value prefix
                words.pop(0)
            if words and words[0] in ("sudo", "time", "exec"):
                words.pop(0)
            if not words:
                continue
            program = Path(words[0]).name
            if program in PROGRAMS:
                found.append(Command(program, tuple(words[1:]), n, text.strip()))
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def check_cli(cmd: Command, parser: argparse.ArgumentParser, *, implicit: str | None = None) -> list[str]:
    """Problems with `cmd` against the real argparse tree: unknown sub-commands, flags or choices.

    Usage notation is understood: `[--yes]`, `approve|reject`, `--output text|json`, `MANIFEST...`.
    `implicit` is the sub-command assumed when the first word is not one (`medperf-apply MANIFEST` = apply).
    """
    problems: list[str] = []
    words = [w.strip("[]") for w in cmd.args]
    words = [w for w in words if w and w != "..."]
    level, path, chosen = parser, [cmd.program], False
    i, pos = 0, 0  # pos: index of the next positional of `level`
    while i < len(words):
        word = words[i]
        i += 1
        if word.startswith("-"):
            flag, _, inline = word.partition("=")
            action = _options(level).get(flag)
            if action is None:
                problems.append(f"{' '.join(path)} has no option {flag}")
                continue
            if action.nargs != 0 and not inline and i < len(words):
                value = words[i]
                i += 1
                if action.choices is not None:
                    bad = [v for v in value.split("|") if v not in action.choices]
                    if bad:
                        problems.append(f"{' '.join(path)} {flag}: {', '.join(bad)} not among {sorted(action.choices)}")
            continue
        subs = _subparsers(level)
        if subs and not chosen:
            names = word.split("|")
            if all(n in subs for n in names):
                for extra in names[1:]:  # each alternative gets the same remaining words checked
                    problems += check_cli(Command(cmd.program, (*path[1:], extra, *words[i:]), cmd.line, cmd.text),
                                          parser)
                level, path, pos = subs[names[0]], [*path, names[0]], 0
                chosen = not _subparsers(level)
                continue
            if implicit and level is parser and re.fullmatch(r"MANIFEST|.*[/.].*", word):  # a path, not a typo'd command
                level, path, chosen, pos = subs[implicit], [*path, implicit], True, 1
                continue  # the word is the implicit command's positional
            problems.append(f"{' '.join(path)} has no sub-command {word!r} (has {', '.join(sorted(subs))})")
            break
        positionals = _positionals(level)
        if pos < len(positionals):
            action = positionals[pos]
            if action.choices is not None:
                bad = [v for v in word.split("|") if v not in action.choices]
                if bad:
                    problems.append(f"{' '.join(path)}: {', '.join(bad)} not among {sorted(action.choices)}")
            if action.nargs not in ("+", "*", argparse.REMAINDER):
                pos += 1
        elif positionals or not word.isupper():
            problems.append(f"{' '.join(path)} takes no further argument {word!r}")
    ends_here = {"--version", "--help", "-h"}  # options that answer without a sub-command
    if not problems and _subparsers(level) and not chosen and cmd.args and not ends_here & set(cmd.args):
        problems.append(f"{' '.join(path)} needs a sub-command")
    return problems


def make_targets(makefile: str) -> set[str]:
    """The targets a Makefile defines (rules at the start of a line, not variables or patterns)."""
    targets = set()
    for line in makefile.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line)
        if m and not line.startswith((".", "\t")):
            targets.update(m.group(1).split())
    return targets


def section(markdown: str, title: str) -> str:
    """The text of the `## title` section, up to the next heading of the same level."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", markdown, flags=re.M | re.S)
    if not m:
        raise AssertionError(f"README.md has no section '## {title}'")
    return m.group(1)


def reference_rows(markdown: str) -> dict[str, str]:
    """{field path: the rest of its row} from the manifest reference table."""
    rows = {}
    for line in section(markdown, "Manifest reference").splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def schema_fields(schema: dict) -> dict[str, dict]:
    """{field path as the README writes it (`datasets[].benchmarks[].models`): its schema} for every property."""
    defs = schema.get("$defs", {})

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    out: dict[str, dict] = {}

    def walk(node: dict, prefix: str) -> None:
        node = resolve(node)
        for name, sub in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            out[path] = resolve(sub)
            child = resolve(sub)
            if child.get("type") == "array" and "items" in child:
                walk(child["items"], path + "[].")
            elif child.get("type") == "object" or "properties" in child:
                walk(child, path + ".")

    walk(schema, "")
    return out


def block_after(markdown: str, marker: str) -> str:
    """The text of the first fenced block after `marker`."""
    at = markdown.index(marker)
    opening = markdown.index("```", at)
    body = markdown.index("\n", opening) + 1
    return markdown[body:markdown.index("```", body)]


def shown_in(block: str, output: str) -> list[str]:
    """Lines of a README block missing from real output; `...` stands for text that varies (times, ids)."""
    missing = []
    for line in block.splitlines():
        line = line.rstrip()
        if not line:
            continue
        fixed = [part for part in line.split("...") if part.strip()]
        if not all(part in output for part in fixed):
            missing.append(line)
    return missing
