"""Recipes: schema, loading and errors.

The schema (recipe.schema.SCHEMA) is the one definition of a recipe; the workload fields
of each kind come from rayctl.recipe.kinds, which imports nothing from here.

`load(path)` returns a `Recipe` or raises `RecipeError` listing every problem, each
with the file, line, column and field path.
"""

from __future__ import annotations

import os
import stat

from ..errors import Problem, RecipeError
from .model import Budget, MinSpec, Recipe, Resources, Teardown, build
from .schema import KINDS, SCHEMA, validate
from .yamlsafe import Fail, Located, dotted, load as load_yaml

__all__ = ["Budget", "KINDS", "MinSpec", "Recipe", "Resources", "SCHEMA", "Teardown", "load", "loads",
           "RecipeError", "field_error"]


def field_error(recipe, path: tuple, message: str) -> RecipeError:
    """A RecipeError (exit 2) about the field at `path` (e.g. ("workload", "endpoint")) of a loaded
    recipe: its file, and the field's line and column when the recipe knows them."""
    where = getattr(recipe, "where", None)
    line, col = where(path) if where is not None else (None, None)
    return RecipeError(recipe.path, [Problem(message, field=".".join(map(str, path)), line=line, column=col)])


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
    """Read and check one recipe file. Only a regular file is read: a FIFO, a device or a
    socket is refused before any read (reading one could block forever)."""
    p = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(st.st_mode):
                raise RecipeError(p, [Problem(
                    f"is {_kind(st.st_mode)}, not a regular file; a recipe is a YAML file on disk "
                    "(copy the recipe to a file and pass that)")])
            os.set_blocking(fd, True)
            with os.fdopen(fd, "rb") as f:
                fd = -1
                data = f.read(MAX_READ + 1)
        finally:
            if fd >= 0:
                os.close(fd)
    except FileNotFoundError:
        raise RecipeError(p, [Problem("no such file")]) from None
    except IsADirectoryError:
        raise RecipeError(p, [Problem("is a directory, not a recipe file")]) from None
    except OSError as e:
        raise RecipeError(p, [Problem(f"cannot read: {e.strerror}")]) from None
    return loads(data, p)


MAX_READ = 1 << 20


def check_target(r: Recipe, target: str) -> None:
    """RecipeError (exit 2, file/line/field) when `r` cannot run on `target` (`rayctl launch --target`
    naming another target than the recipe's own; the recipe's own target was checked when it loaded)."""
    from ..redact import redact_url
    from .schema import target_checks

    if not isinstance(r.raw, dict) or target == r.target:
        return
    problems = []
    for path, message, key in target_checks(r.raw, target):
        line, col = r.marks.where(path, key=key) if r.marks is not None else (None, None)
        problems.append(Problem(redact_url(message), field=dotted(path), line=line, column=col))
    if problems:
        raise RecipeError(r.path, problems)


def secret_values(path) -> tuple[str, ...]:
    """The workload.env secret values of the recipe file at `path` (a run's `recipe_path`), to mask
    them in what rayctl prints or stores about that run; () when the file is gone or no longer a recipe."""
    from ..redact import secret_values as of_env

    if not path:
        return ()
    try:
        env = load(path).workload.get("env")
    except RecipeError:
        return ()
    return of_env(env) if isinstance(env, dict) else ()


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
