"""The rule scripts are thin: each hands Snakemake's params to its stage function unchanged."""

import ast
import importlib
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

import dosepaint.stages.guard as guard

SCRIPTS = sorted((Path(__file__).parents[1] / "scripts").glob("*.py"))


def _stage_imports(script: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from dosepaint.stages.X import name`` in a rule script."""
    tree = ast.parse(script.read_text())
    return [
        (node.module, alias.name)
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and node.module.startswith("dosepaint.stages.")
        and node.module != "dosepaint.stages.guard"
        for alias in node.names
    ]


class _Named(dict):
    """Snakemake's named lists as rule scripts use them: ``.items()`` and attribute access."""

    __getattr__ = dict.__getitem__


def _named(**items) -> _Named:
    return _Named(items)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_passes_params_unchanged(script, tmp_path, monkeypatch):
    seen = []
    for module, name in _stage_imports(script):
        monkeypatch.setattr(importlib.import_module(module), name, lambda *args, params, **kw: seen.append(params))
    monkeypatch.setattr(
        guard, "run_guarded", lambda run, inputs, outputs, *, params, stage: run(inputs, outputs, params=params)
    )
    params = {"threads": 1, "seed": 7}
    fake = SimpleNamespace(
        input=_named(a="in"),
        output=_named(b="out"),
        params=_named(**params),
        log=[str(tmp_path / "rule.log")],
        threads=4,
        wildcards=_named(patient="P1"),
    )
    runpy.run_path(str(script), init_globals={"snakemake": fake})
    assert seen == [params] * len(seen) and seen, f"{script.name} changed its params: {seen}"
