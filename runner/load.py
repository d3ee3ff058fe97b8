"""Read manifests (files or folders, several YAML documents each), render them as Jinja2 templates, and
remember the file, line and column of every node so later errors point into the user's file."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ManifestError, UsageError
from runner.model import Where

try:  # the C loader is several times faster; both record marks
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _Loader

MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_MANIFEST_BYTES = 4 << 20  # a manifest is a page of YAML; anything this big is the wrong file
MAX_DEPTH = 64  # the schema nests 6 levels; deeper is a mistake (and Python's recursion limit is near)
MAX_NODES = 200_000  # nodes after expanding aliases: stops "billion laughs" before it eats the memory
YAML_HINT = "check the indentation, quoting and brackets at that line (YAML)"

JsonPath = tuple  # of str keys and int indexes


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file, with the position of every value and key."""

    data: Any
    file: str
    index: int  # 0-based document number in its file
    text: str = field(repr=False, default="")  # the rendered text (part of validation's cache key)
    positions: Mapping[JsonPath, tuple[int, int]] = field(default_factory=dict, repr=False)  # path -> value (line, col)
    key_positions: Mapping[JsonPath, tuple[int, int]] = field(default_factory=dict, repr=False)  # path -> key (line, col)

    @property
    def folder(self) -> Path:
        return Path(self.file).resolve().parent

    def where(self, path: Sequence[Any] = (), *, key: bool = False) -> Where:
        """The place of `path` (or of its key), falling back to the nearest existing parent."""
        p = tuple(path)
        while True:
            pos = (self.key_positions.get(p) if key else None) or self.positions.get(p)
            if pos is not None:
                return Where(self.file, pos[0], pos[1])
            if not p:
                return Where(self.file, 1, 1)
            p = p[:-1]


def parse_var(text: str) -> tuple[str, str]:
    """Split a --var k=v argument."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--var {text!r}: expected NAME=VALUE")
    return name.strip(), value


def load_values(files: Iterable[str | Path], pairs: Iterable[str]) -> dict[str, Any]:
    """Merge --values FILE (YAML mappings, in order) and then --var k=v (wins) into the `vars` of templates."""
    values: dict[str, Any] = {}
    for f in files:
        try:
            data = yaml.load(Path(f).read_text(encoding="utf-8"), Loader=_Loader)
        except OSError as e:
            raise ManifestError(f"cannot read values file: {e.strerror}", where=str(f)) from e
        except yaml.YAMLError as e:
            raise ManifestError(f"not valid YAML: {e}", where=str(f)) from e
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ManifestError("a values file must hold one mapping of names to values", where=str(f))
        values.update(data)
    for p in pairs:
        k, v = parse_var(p)
        values[k] = v
    return values


def expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders -> their *.yaml/*.yml files (not recursive), sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.suffix in MANIFEST_SUFFIXES and c.is_file())
            if not found:
                raise ManifestError("folder holds no *.yaml or *.yml manifest", where=str(p))
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise ManifestError("no such file or folder", where=str(p), hint="check the path given on the command line")
    return out


def load(paths: Sequence[str | Path], *, variables: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> list[Document]:
    """Read, render and parse every manifest document under `paths`."""
    environ = os.environ if environ is None else environ
    docs: list[Document] = []
    files = expand(paths)
    for path in files:
        source = _read(path)
        text = render(source, str(path), variables or {}, environ)
        docs.extend(parse(text, str(path)))
    if files and not docs:
        raise ManifestError("holds no YAML document (the file is empty or only comments)", where=f"{files[-1]}:1",
                            hint="write a manifest there (apiVersion: medperf-apply/v1, kind: DataOwner, server, "
                                 "datasets), e.g. from manifests/chestxray-tutorial.yaml")
    return docs


def _read(path: Path) -> str:
    """The manifest's text: UTF-8, of a manifest's size; errors name the file and the line."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"is {size:,} bytes: larger than a manifest can be ({MAX_MANIFEST_BYTES:,})",
                                where=f"{path}:1", hint="is this the right file? give the YAML manifest, not data")
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read manifest: {e.strerror or e}", where=str(path),
                            hint="check the path and its permissions") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ManifestError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})", where=f"{path}:{line}",
                            hint="a manifest is UTF-8 YAML text: is this the right file? (re-save it as UTF-8)") from e


# `{{ env.NAME }}`, `{{ vars.NAME }}`, optionally `| default("text")`: what manifests mostly hold.
_SIMPLE = re.compile(r"""\{\{\s*(env|vars)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\s*"""
                     r"""(?:\|\s*default\s*\(\s*(?:"([^"\\{}]*)"|'([^'\\{}]*)')\s*\)\s*)?\}\}""")


def _render_simple(source: str, variables: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """Render a template made only of simple substitutions exactly as Jinja2 would, without importing it (a
    third of a no-op plan's imports); None for anything else (blocks, comments, filters, \\r, an unset name
    without a default, a value that is not a string, a name that is a dict method): Jinja2 renders those."""
    if "{%" in source or "{#" in source or "{{{" in source or "\r" in source:
        return None
    out: list[str] = []
    end = 0
    for m in _SIMPLE.finditer(source):
        where, name, dq, sq = m.groups()
        if hasattr(dict, name):  # Jinja2 would find the dict's method before the key
            return None
        scope = environ if where == "env" else variables
        value = scope.get(name)
        if value is None and name not in scope:
            if dq is None and sq is None:
                return None  # undefined: Jinja2 raises, with the line
            value = dq if dq is not None else sq
        if not isinstance(value, str):
            return None
        out.append(source[end:m.start()])
        out.append(value)
        end = m.end()
    out.append(source[end:])
    if source.count("{{") != len(out) // 2:  # a {{ ... }} that is not a simple substitution
        return None
    return "".join(out)


def render(source: str, filename: str, variables: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """Render `source` as a Jinja2 template with `env` and `vars`; an unset name is an error at file:line."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return source  # no template syntax: skip importing Jinja2 at all
    simple = _render_simple(source, variables, environ)
    if simple is not None:
        return simple
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (source, filename, lambda: True)),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
    )
    try:
        template = env.get_template(filename)
        return template.render(env=dict(environ), vars=dict(variables))
    except jinja2.TemplateSyntaxError as e:
        raise ManifestError(f"template syntax error: {e.message}", where=f"{filename}:{e.lineno}",
                            hint="close every {{ ... }} and {% ... %}; write a literal {{ as {{ '{{' }}") from e
    except jinja2.UndefinedError as e:
        line = _template_line(filename)
        raise ManifestError(
            f"template: {_undefined_name(e.message or '', source, line)} is undefined",
            where=f"{filename}:{line}" if line else filename,
            hint="set it with --var NAME=VALUE or --values FILE (vars.NAME), or export it (env.NAME), "
                 "or give a default: {{ env.NAME | default('...') }}",
        ) from e
    except jinja2.TemplateError as e:
        line = _template_line(filename)
        raise ManifestError(f"template error: {e}", where=f"{filename}:{line}" if line else f"{filename}:1",
                            hint="fix the template expression at that line") from e
    except Exception as e:  # an expression that fails while rendering ({{ 1/0 }}, a bad filter argument...)
        line = _template_line(filename)
        raise ManifestError(f"template: {type(e).__name__}: {e}", where=f"{filename}:{line}" if line else
                            f"{filename}:1", hint="fix the template expression at that line") from e


def _undefined_name(message: str, source: str, line: int | None) -> str:
    """Name the unset variable as the user wrote it (vars.site, env.HOME) rather than Jinja2's wording."""
    m = re.search(r"has no attribute '([^']+)'|'([^']+)' is undefined", message)
    if not m:
        return message
    name = m.group(1) or m.group(2)
    text = source.splitlines()[line - 1] if line and 0 < line <= len(source.splitlines()) else ""
    for prefix in ("vars", "env"):
        if re.search(rf"\b{prefix}\s*(\.\s*{re.escape(name)}\b|\[\s*['\"]{re.escape(name)}['\"])", text):
            return f"'{prefix}.{name}'"
    return f"'{name}'"


def _template_line(filename: str) -> int | None:
    """The template line being rendered when the current exception was raised (Jinja2 rewrites tracebacks)."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def parse(text: str, filename: str) -> list[Document]:
    """Parse every YAML document of `text`, recording the position of each node."""
    loader = _Loader(text)
    docs: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            positions: dict[JsonPath, tuple[int, int]] = {}
            key_positions: dict[JsonPath, tuple[int, int]] = {}
            _walk(node, (), positions, key_positions, filename, [0])
            data = loader.construct_document(node)
            if data is not None:
                docs.append(Document(data, filename, index, text, positions, key_positions))
            index += 1
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else f"{filename}:1"
        raise ManifestError(f"not valid YAML: {e.problem or e.context}", where=where, hint=YAML_HINT) from e
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, other control characters)
        line = text.count("\n", 0, max(0, e.position)) + 1
        shown = repr(chr(e.character)) if isinstance(e.character, int) else repr(e.character)
        raise ManifestError(f"not valid YAML: character {shown} is not allowed", where=f"{filename}:{line}",
                            hint="remove the control character (is this a text file?)") from e
    except yaml.YAMLError as e:
        raise ManifestError(f"not valid YAML: {e}", where=f"{filename}:1", hint=YAML_HINT) from e
    finally:
        loader.dispose()
    return docs


def _walk(node: yaml.Node, path: JsonPath, positions: dict, key_positions: dict, filename: str = "?",
          count: list[int] | None = None) -> None:
    """Record the position of every node; refuse duplicate keys, absurd nesting and alias bombs."""
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    if count is not None:
        count[0] += 1
        if count[0] > MAX_NODES:
            raise ManifestError(f"expands to more than {MAX_NODES:,} values (aliases of aliases?)",
                                where=f"{filename}:{line}", hint="a manifest is small: remove the repeated aliases")
    if len(path) > MAX_DEPTH:
        raise ManifestError(f"nested more than {MAX_DEPTH} levels deep", where=f"{filename}:{line}:{col}",
                            hint="a manifest nests a few levels: check the brackets and indentation")
    positions[path] = (line, col)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            child = (*path, key)
            if child in key_positions and isinstance(key_node, yaml.ScalarNode):
                first = key_positions[child][0]
                raise ManifestError(f"key {key!r} appears twice in the same mapping (first at line {first})",
                                    where=f"{filename}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}",
                                    hint="YAML would silently keep only the last one: remove one of them")
            key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, positions, key_positions, filename, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), positions, key_positions, filename, count)
