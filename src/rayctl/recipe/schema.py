"""The recipe schema (JSON Schema, draft 2020-12) and its validator.

`SCHEMA` is the one definition of a recipe: the fields below plus, for each kind,
the `workload:` fields its module in rayctl.recipe.kinds declares. `rayctl recipe
schema` prints it; `validate` runs it with the `jsonschema` library and turns every
error into a Problem with the line, column and field path it comes from. The rules
JSON Schema cannot say (accelerator names, cron expressions, finite numbers,
relations between workload fields) run after it, in Python, from the same modules.
"""

from __future__ import annotations

import difflib
import math

from ..errors import Problem
from . import kinds as spec
from .kinds.base import describe, show
from .yamlsafe import Located, dotted
from ..redact import redact_url

KINDS = tuple(spec.KINDS)
CLOUDS = ("aws", "gcp", "azure", "lambda", "runpod", "cudo", "shadeform", "vast", "hyperbolic",
          "mithril", "nebius", "seeweb", "simplepod", "fluidstack", "paperspace", "oci", "do",
          "kubernetes")
OBJECTIVES = ("per-token", "hourly")

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
                "checkpoint_minutes": dict(_POSITIVE, default=30),
                "restart_minutes": {"type": "number", "minimum": 0, "default": 5},
                "objective": {"enum": list(OBJECTIVES),
                              "description": "rank offers by $ per 1M output tokens (default for batch-infer "
                                             "and serve) or by cluster $/h (default for train and tune)"},
            },
        },
        "budget": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"max_usd": _POSITIVE, "max_hours": _POSITIVE},
        },
        "target": {"type": "string", "pattern": r"^(local|cloud|https?://\S+)$", "default": "local",
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
        "compare_to": {"type": "array", "items": {"type": "string", "minLength": 1},
                       "description": "managed APIs to compare the plan with, as `cost compare --api` names "
                                      "them, e.g. [gpt-4o-mini, groq:llama-3.1-8b-instant]"},
        "workload": {"type": "object", "description": "kind-specific settings; see docs/workloads.md"},
    },
    # Each kind's workload fields, or your own code (workload.entrypoint) for any kind.
    "allOf": [
        {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
         "then": {"properties": {"workload": spec.workload_schema(kind, mod.FIELDS, mod.REQUIRED)},
                  **({"required": ["workload"]} if mod.REQUIRED else {})}}
        for kind, mod in spec.KINDS.items()
    ],
}


def default(*path: str):
    """The schema's default for a field, e.g. default("resources", "nodes") -> 1."""
    node = SCHEMA
    for p in path:
        node = node["properties"][p]
    return node.get("default")


# ---------------------------------------------------------------- running it

_VALIDATOR = None


def _validator():
    """The jsonschema validator of SCHEMA (built once; jsonschema is imported here only)."""
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema
        from jsonschema import validators

        from . import accelerators

        # YAML's 1.0 is a float: a whole-number field wants an int (JSON Schema would take 1.0).
        types = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool))
        cls = validators.extend(jsonschema.Draft202012Validator, type_checker=types)
        formats = jsonschema.FormatChecker(formats=())
        formats.checks("accelerator", raises=ValueError)(lambda v: not isinstance(v, str)
                                                         or accelerators.parse_spec(v) is not None)
        _VALIDATOR = cls(SCHEMA, format_checker=formats)
    return _VALIDATOR


def validate(doc: Located) -> list[Problem]:
    """Every problem of a recipe document, in file order."""
    value = doc.value
    instance = value
    if isinstance(value, dict) and "workload" not in value and value.get("kind") in spec.KINDS:
        instance = dict(value, workload={})  # no workload: the kind's defaults (and its required fields)
    found: list[tuple[tuple, str, bool]] = []
    for err in _validator().iter_errors(instance):
        _translate(err, found)
    flagged = {p for p, _, _ in found}
    found.extend(x for x in _non_finite(value, ()) if x[0] not in flagged)
    found.extend(_python_checks(instance, {p for p, _, _ in found}))
    problems: list[Problem] = []
    seen = set()
    for path, message, key in found:
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line, col = doc.where(path, key=key)
        problems.append(Problem(redact_url(message), field=dotted(path), line=line, column=col))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    return problems


_ARTICLE = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
            "number": "a number", "boolean": "true or false", "null": "null"}


def _custom(schema: dict, value) -> str | None:
    msg = schema.get("x-error") if isinstance(schema, dict) else None
    return msg.format(got=describe(value), value=value) if msg else None


def _translate(err, out: list) -> None:
    """Append (path, message, points at a key?) for one jsonschema error."""
    path = tuple(err.absolute_path)
    schema, value, kw = err.schema, err.instance, err.validator
    if "propertyNames" in err.relative_schema_path:
        out.append((path + (value,), _custom(schema, value) or f"'{value}' is not a valid name", True))
        return
    if kw == "anyOf":
        _any_of(err, path, out)
        return
    custom = _custom(schema, value)
    if custom and kw not in ("required", "additionalProperties"):
        out.append((path, custom, False))
        return
    if kw == "type":
        t = err.validator_value
        want = " or ".join(_ARTICLE[x] for x in ([t] if isinstance(t, str) else t))
        out.append((path, f"expected {want}, got {describe(value)}", False))
    elif kw in ("enum", "const"):
        opts = err.validator_value if kw == "enum" else [err.validator_value]
        close = difflib.get_close_matches(str(value), [str(e) for e in opts], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        out.append((path, f"{describe(value)} is not one of: {', '.join(show(e) for e in opts)}{hint}", False))
    elif kw == "required":
        props = schema.get("properties", {})
        for key in err.validator_value:
            if key in value:
                continue
            if "x-missing" in schema:
                about = props.get(key, {}).get("description")
                msg = schema["x-missing"].format(key=key, about=f" ({about})" if about else "")
            else:
                msg = f"required field '{key}' is missing" + (f" at {dotted(path)}" if path else "")
            out.append((path, msg, False))
    elif kw == "additionalProperties":
        props = schema.get("properties", {})
        how = schema.get("x-unknown", {})
        for key in value:
            if key in props:
                continue
            if key in how.get("elsewhere", {}):
                out.append((path + (key,), how["elsewhere"][key], True))
                continue
            close = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.6)
            hint = (f"; did you mean '{close[0]}'?" if close
                    else f"; {how.get('allowed', 'allowed')}: {', '.join(props)}")
            out.append((path + (key,), f"unknown {how.get('what', 'field')} '{key}'{how.get('where', '')}{hint}",
                        True))
    elif kw == "minLength":
        out.append((path, "must not be empty", False))
    elif kw == "pattern":
        hint = schema.get("description")
        out.append((path, f"'{value}' is not valid" + (f": {hint}" if hint else ""), False))
    elif kw == "format":
        out.append((path, str(err.cause or err.message), False))
    elif kw == "minItems":
        out.append((path, f"needs at least {err.validator_value} item(s)", False))
    elif kw == "maxItems":
        out.append((path, f"takes at most {err.validator_value} item(s)", False))
    elif kw in ("minimum", "exclusiveMinimum", "maximum") and not math.isfinite(value):
        return  # NaN/infinity: "expected a finite number" (see _non_finite)
    elif kw == "minimum":
        out.append((path, f"must be >= {err.validator_value}, got {value}", False))
    elif kw == "exclusiveMinimum":
        out.append((path, f"must be > {err.validator_value}, got {value}", False))
    elif kw == "maximum":
        out.append((path, f"must be <= {err.validator_value}, got {value}", False))
    else:
        out.append((path, err.message, False))


def _any_of(err, path: tuple, out: list) -> None:
    """An anyOf failure: the errors of the branch whose type matched, else what was expected."""
    branches = err.validator_value
    by_branch: dict[int, list] = {}
    for sub in err.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    best = None
    for i, sub in enumerate(branches):
        if best is None or (_type_matches(err.instance, sub) and not _type_matches(err.instance, branches[best])):
            best = i
    custom = _custom(err.schema, err.instance)
    if best is not None and _type_matches(err.instance, branches[best]):
        found: list = []
        for sub in by_branch.get(best, []):
            _translate(sub, found)
        for p, msg, key in found:
            # The anyOf's own message replaces its branch's messages about this same value.
            out.append((p, custom, False) if custom and p == path and not key else (p, msg, key))
        return
    wanted = " or ".join(_expect(s) for s in branches)
    out.append((path, custom or f"expected {wanted}, got {describe(err.instance)}", False))


def _type_ok(value, t) -> bool:
    if isinstance(t, list):
        return any(_type_ok(value, x) for x in t)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "array": list, "string": str, "boolean": bool,
                              "null": type(None)}[t])


def _type_matches(value, schema) -> bool:
    if "enum" in schema:
        return any(type(value) is type(e) for e in schema["enum"])
    t = schema.get("type")
    return t is None or _type_ok(value, t)


def _expect(schema) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(show(e) for e in schema["enum"])
    return _ARTICLE.get(schema.get("type", ""), "a value")


# ---------------------------------------------------------------- what JSON Schema cannot say

def _non_finite(value, path: tuple):
    """NaN and infinities (YAML's .nan, .inf) are refused wherever a number may go."""
    if isinstance(value, float) and not math.isfinite(value):
        yield (path, f"expected a finite number, got {value}", False)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, path + (i,))


def _bad_address(url: str) -> str | None:
    """Why an http(s) target cannot be a cluster address (no host, a port out of range), or None."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        port = u.port  # ValueError when out of range or not a number
    except ValueError as e:
        return str(e)
    if not u.hostname:
        return "it names no host"
    if port == 0:
        return "port 0"
    return None


def _python_checks(doc: dict, bad: set) -> list:
    """Cron expressions and each kind's workload rules, where the schema found nothing wrong."""
    if not isinstance(doc, dict):
        return []
    out: list = []
    sched = doc.get("schedule")
    if isinstance(sched, str) and sched and ("schedule",) not in bad:
        from .cron import CronError, check as check_cron

        try:
            check_cron(sched, fires=False)
        except CronError as e:
            out.append((("schedule",), f"'{sched}' is not a cron expression cron can run: {e}", False))
    target = doc.get("target")
    if isinstance(target, str) and target.startswith(("http://", "https://")) and ("target",) not in bad:
        why = _bad_address(target)
        if why:
            out.append((("target",), f"'{target}' is not a Ray dashboard address: {why} "
                                     "(expected http://HEAD:8265)", False))
    mod = spec.KINDS.get(doc.get("kind"))
    wl = doc.get("workload")
    if mod is None or not isinstance(wl, dict) or "entrypoint" in wl:
        return out
    under = lambda p: any(b[:len(p)] == p for b in bad)  # noqa: E731
    fields: list = []
    for key, check in mod.FIELD_CHECKS.items():
        if key in wl and not under(("workload", key)):
            fields.extend((("workload", key) + sub, msg, k) for sub, msg, k in check(wl[key]))
    out.extend(fields)
    if not under(("workload",)) and not fields:
        out.extend((("workload",) + sub, msg, k)
                   for sub, msg, k in mod.extra(wl, spec.with_defaults(wl, mod.FIELDS)))
        if ("target",) not in bad and not under(("resources",)):
            out.extend(target_checks(doc, doc.get("target", default("target"))))
    return out


def target_checks(doc: dict, target: str) -> list:
    """(path, message, points at a key?) for the rules of the recipe document `doc` that depend on
    where it runs (`target`: the recipe's own, or `rayctl launch --target`), e.g. checkpoint storage
    every node reaches when a multi-node run is on the cloud or an existing cluster."""
    mod = spec.KINDS.get(doc.get("kind"))
    wl = doc.get("workload") or {}
    check = getattr(mod, "target_checks", None)
    if check is None or not isinstance(wl, dict) or "entrypoint" in wl:
        return []
    res = doc.get("resources") or {}
    nodes = res.get("nodes", default("resources", "nodes")) if isinstance(res, dict) else None
    if not isinstance(nodes, int) or isinstance(nodes, bool):
        return []
    return [(("workload",) + sub, msg, k)
            for sub, msg, k in check(spec.with_defaults(wl, mod.FIELDS), nodes, target)]
