"""Recipes: schema, loading and errors.

The schema (recipe.schema.SCHEMA) is the one definition of a recipe; the workload fields
of each kind come from rayctl.workloads.spec, which imports nothing from here.

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
    if problems:
        raise RecipeError(path, problems)
    return build(doc, path, data)


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
