"""The recipe schema (JSON Schema, draft 2020-12) and a validator that reports
every problem with the line, column and field path it comes from.

The schema below is the single source of truth: `rayctl recipe schema` prints it for
editors and CI, and `validate` interprets the subset of JSON Schema it uses.
"""

from __future__ import annotations

import difflib

from .. import accelerators
from ..errors import Problem
from .yamlsafe import Located, dotted

KINDS = ("train", "tune", "batch-infer", "serve")
CLOUDS = ("aws", "gcp", "azure", "lambda", "runpod", "cudo", "shadeform", "vast", "hyperbolic",
          "mithril", "nebius", "seeweb", "simplepod", "fluidstack", "paperspace", "oci", "do",
          "kubernetes")

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}}
_MIN_SPEC = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?\+?$"},
    ],
    "description": "N (exactly N) or N+ (at least N), as in SkyPilot",
}
_ACC = {"type": "string", "format": "accelerator", "description": "NAME[:COUNT], e.g. H100:8"}

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://rayctl.dev/schema/recipe.json",
    "title": "rayctl recipe",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "kind"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                 "description": "lower-case letters, digits and '-', at most 63 characters"},
        "kind": {"enum": list(KINDS)},
        "resources": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "accelerators": {"anyOf": [_ACC, {"type": "array", "items": _ACC, "minItems": 1}],
                                 "description": "NAME[:COUNT] or a list of acceptable alternatives"},
                "nodes": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
                "spot": {"anyOf": [{"type": "boolean"}, {"enum": ["auto"]}], "default": False,
                         "description": "true, false, or auto (spot offers first, then on-demand)"},
                "clouds": {"type": "array", "items": {"enum": list(CLOUDS)}},
                "regions": _NAMES,
                "exclude_regions": _NAMES,
                "prefer_regions": _NAMES,
                "prefer_within_pct": {"type": "number", "minimum": 0, "default": 10},
                "max_hourly_usd": _POSITIVE,
                "cpus": _MIN_SPEC,
                "memory": _MIN_SPEC,
                "checkpoint_minutes": _POSITIVE,
                "restart_minutes": {"type": "number", "minimum": 0},
                "objective": {"enum": ["per-token", "hourly"],
                              "description": "rank offers by $ per 1M output tokens (default for batch-infer "
                                             "and serve) or by cluster $/h (default for train and tune)"},
            },
        },
        "budget": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"max_usd": _POSITIVE, "max_hours": _POSITIVE},
        },
        "target": {"type": "string", "pattern": r"^(local|cloud|https?://\S+)$",
                   "description": "local (default), cloud, or an existing Ray cluster's dashboard "
                                  "address, e.g. http://head:8265"},
        "teardown": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "after": {"enum": ["job", "idle", "never"]},
                "idle_minutes": {"type": "integer", "minimum": 1},
            },
        },
        "schedule": {"type": "string", "minLength": 1, "description": "cron expression, e.g. '0 2 * * *'"},
        "workload": {"type": "object", "description": "kind-specific settings; see docs/recipes.md"},
        "compare_to": {"type": "array", "items": {"type": "string", "minLength": 1},
                       "description": "managed APIs to compare the plan with, as `cost compare --api` names "
                                      "them, e.g. [gpt-4o-mini, groq:llama-3.1-8b-instant]"},
    },
}

_TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


def _type_ok(value, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def _describe(value) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"number {value}"
    s = str(value)
    return f"string '{s[:60]}{'...' if len(s) > 60 else ''}'"


_ARTICLE = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
            "number": "a number", "boolean": "true or false", "null": "null"}


def validate(doc: Located, schema: dict = SCHEMA) -> list[Problem]:
    problems: list[Problem] = []
    _check(doc, doc.value, schema, (), problems)
    return problems


def _problem(doc: Located, path, message: str, key: bool = False) -> Problem:
    line, col = doc.where(path, key=key)
    return Problem(message, field=dotted(path), line=line, column=col)


def _check(doc, value, schema, path, problems) -> None:
    if "anyOf" in schema:
        best = None
        for sub in schema["anyOf"]:
            trial: list[Problem] = []
            _check(doc, value, sub, path, trial)
            if not trial:
                return
            # Prefer the branch whose type matched (its problems are more specific).
            if best is None or (_type_matches(value, sub) and not _type_matches(value, best[0])):
                best = (sub, trial)
        if best is not None and _type_matches(value, best[0]):
            problems.extend(best[1])
        else:
            wanted = " or ".join(_expect(s) for s in schema["anyOf"])
            problems.append(_problem(doc, path, f"expected {wanted}, got {_describe(value)}"))
        return
    if "enum" in schema:
        if value not in schema["enum"] or isinstance(value, bool) != any(isinstance(e, bool) for e in schema["enum"]):
            opts = ", ".join(str(e) for e in schema["enum"])
            close = difflib.get_close_matches(str(value), [str(e) for e in schema["enum"]], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(_problem(doc, path, f"{_describe(value)} is not one of: {opts}{hint}"))
        return
    t = schema.get("type")
    if t and not _type_ok(value, t):
        problems.append(_problem(doc, path, f"expected {_ARTICLE[t]}, got {_describe(value)}"))
        return
    if t == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(_problem(doc, path, f"required field '{key}' is missing"
                                         + (f" at {dotted(path)}" if path else "")))
        for key, sub in value.items():
            if key in props:
                _check(doc, sub, props[key], path + (key,), problems)
            elif schema.get("additionalProperties") is False:
                close = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(props)}"
                problems.append(_problem(doc, path + (key,), f"unknown field '{key}'{hint}", key=True))
    elif t == "array":
        if len(value) < schema.get("minItems", 0):
            problems.append(_problem(doc, path, f"needs at least {schema['minItems']} item(s)"))
        items = schema.get("items")
        if items:
            for i, item in enumerate(value):
                _check(doc, item, items, path + (i,), problems)
    elif t == "string":
        import re

        if len(value) < schema.get("minLength", 0):
            problems.append(_problem(doc, path, "must not be empty"))
        elif "pattern" in schema and not re.match(schema["pattern"], value):
            hint = schema.get("description")
            problems.append(_problem(doc, path, f"'{value}' is not valid" + (f": {hint}" if hint else "")))
        elif schema.get("format") == "accelerator":
            try:
                accelerators.parse_spec(value)
            except ValueError as e:
                problems.append(_problem(doc, path, str(e)))
    elif t in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(_problem(doc, path, f"must be >= {schema['minimum']}, got {value}"))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            problems.append(_problem(doc, path, f"must be > {schema['exclusiveMinimum']}, got {value}"))
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(_problem(doc, path, f"must be <= {schema['maximum']}, got {value}"))


def _type_matches(value, schema) -> bool:
    if "enum" in schema:
        return any(type(value) is type(e) for e in schema["enum"])
    t = schema.get("type")
    return t is None or _type_ok(value, t)


def _expect(schema) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(str(e) for e in schema["enum"])
    return _ARTICLE.get(schema.get("type", ""), "a value")
