"""Manifest templates made only of simple substitutions are rendered without Jinja2, exactly as Jinja2 would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from runner.errors import ManifestError
from runner.load import _render_simple, render

ENV = {"MEDPERF_SERVER": "http://127.0.0.1:8000", "EMPTY": "", "ODD": "a {{ b }} c\n'\"", "items": "x"}
VARS = {"site": "lyon", "n": 3, "none": None, "lst": [1, 2]}

TEMPLATES = [
    "url: {{ env.MEDPERF_SERVER }}\n",
    "url: {{env.MEDPERF_SERVER}}",
    "url: {{ env.MISSING | default(\"http://127.0.0.1:8000\") }}\nnext\n\n",
    "url: {{ env.MISSING|default('x y') }} and {{ vars.site }}\n",
    "a: {{ env.EMPTY | default('fallback') }}\n",     # defined but empty: Jinja2 keeps ''
    "a: {{ env.ODD }}\n",                             # the value is not rendered again
    "a: {{ vars.n }}\n",                              # not a string: Jinja2 renders it
    "a: {{ vars.none | default('d') }}\n",
    "a: {{ vars.lst }}\n",
    "a: {{ env.items }}\n",                           # a dict method wins in Jinja2
    "a: {{ env.MEDPERF_SERVER | upper }}\n",
    "a: {{- env.MEDPERF_SERVER }}\n",
    "{% if env.EMPTY %}x{% endif %}\n",
    "a: {# c #}{{ env.MEDPERF_SERVER }}\n",
    "a: {{ '{{' }}\n",
    "a: b }} c\n",
    "a: {{ env.MEDPERF_SERVER }}\r\nb: 1\r\n",
    "a: {{ env.MISSING | default(\"a\\\\nb\") }}\n",
    "a: {{ env [ 'MEDPERF_SERVER' ] }}\n",
    "no template at all\n",
]


def jinja(source: str) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(source).render(env=dict(ENV), vars=dict(VARS))


def same(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x", text)  # a rendered method's address differs from render to render


@pytest.mark.parametrize("source", TEMPLATES)
def test_the_fast_path_renders_as_jinja2_or_leaves_it_to_jinja2(source):
    fast = _render_simple(source, VARS, ENV)
    assert fast is None or fast == jinja(source)
    assert same(render(source, "m.yaml", VARS, ENV)) == same(jinja(source))


def test_the_fast_path_takes_the_tutorial_forms():
    assert _render_simple(TEMPLATES[0], VARS, ENV) == "url: http://127.0.0.1:8000\n"
    assert _render_simple(TEMPLATES[2], VARS, {}) == "url: http://127.0.0.1:8000\nnext\n\n"
    assert _render_simple(TEMPLATES[3], VARS, ENV) == "url: x y and lyon\n"


def test_an_unset_name_still_fails_with_jinja2s_line():
    with pytest.raises(ManifestError) as e:
        render("a: 1\nb: {{ env.NOPE_NOT_SET }}\n", "m.yaml", {}, {})
    assert "env.NOPE_NOT_SET" in str(e.value) and "m.yaml:2" in str(e.value.where)


def test_the_tutorial_manifest_loads_without_importing_jinja2():
    repo = Path(__file__).resolve().parents[2]
    code = ("import sys; from runner.load import load; docs = load([sys.argv[1]], environ={}); "
            "print(docs[0].data['server']['url'], 'jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(repo / "manifests" / "chestxray-tutorial.yaml")],
                         cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["http://127.0.0.1:8000", "False"]
