"""Recipes: schema, loading and errors.

`load(path)` returns a `Recipe` or raises `RecipeError` listing every problem, each
with the file, line, column and field path.
"""

from __future__ import annotations

import os

from ..errors import Problem, RecipeError
from .model import Budget, MinSpec, Recipe, Resources, Teardown, build
from .schema import KINDS, SCHEMA, validate
from .yamlsafe import Fail, Located, load as load_yaml

__all__ = ["Budget", "KINDS", "MinSpec", "Recipe", "Resources", "SCHEMA", "Teardown", "load", "loads",
           "RecipeError"]

# Kind-specific checks registered by the workload modules (they know their own shape).
# Each takes (Located document, problems list) and appends Problems.
WORKLOAD_CHECKS: dict = {}


def loads(data: bytes, path: str = "<recipe>") -> Recipe:
    try:
        doc = load_yaml(data)
    except Fail as f:
        raise RecipeError(path, [f.problem]) from None
    if not isinstance(doc.value, dict):
        kind = "a list" if isinstance(doc.value, list) else f"a single value ({doc.value!r:.40})"
        line, col = doc.where(())
        raise RecipeError(path, [Problem(
            f"a recipe is a mapping of fields (name, kind, resources, ...), but this file holds {kind}",
            line=line, column=col)])
    problems = validate(doc)
    if not problems:
        check = WORKLOAD_CHECKS.get(doc.value.get("kind")) or _builtin_check(doc.value.get("kind"))
        if check is not None:
            check(doc, problems)
    if problems:
        raise RecipeError(path, problems)
    return build(doc.value, path, data)


def _builtin_check(kind):
    """Import the built-in runner of `kind`; importing it registers its check (no ray import)."""
    import importlib

    from ..workloads.common import MODULES

    if kind not in MODULES:
        return None
    name = f"rayctl.workloads.{MODULES[kind]}"
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return None
    return WORKLOAD_CHECKS.get(kind)


def load(path: str | os.PathLike) -> Recipe:
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_READ + 1)
    except FileNotFoundError:
        raise RecipeError(p, [Problem("no such file")]) from None
    except IsADirectoryError:
        raise RecipeError(p, [Problem("is a directory, not a recipe file")]) from None
    except OSError as e:
        raise RecipeError(p, [Problem(f"cannot read: {e.strerror}")]) from None
    return loads(data, p)


MAX_READ = 1 << 20
