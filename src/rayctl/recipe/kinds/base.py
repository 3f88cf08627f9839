"""Building blocks of the recipe's one definition: JSON Schema fragments for fields.

Every field of a recipe and of each workload kind is a JSON Schema (draft 2020-12)
fragment built here. `rayctl recipe schema` prints them, `rayctl validate` runs them
with the `jsonschema` library (see rayctl.recipe.schema), and the runners read their
defaults from them (`with_defaults`). Standard library only: this module is imported
by `validate`/`plan` on the client and by the workload jobs on the cluster.

Keywords starting with `x-` only shape rayctl's error messages (JSON Schema ignores
unknown keywords):

- `x-error`: the whole message when the value fails this fragment; `{got}` is the
  value described in words, `{value}` the value itself.
- `x-unknown`: how an unknown key of this mapping is reported: `what` ("field"),
  `where` (text after the key), `allowed` (the label before the list of keys),
  `elsewhere` (key -> message for keys that belong to another form).
- `x-missing`: message for a missing required key; `{key}`, `{about}` (" (description)").

Python-only rules (relations between fields, tune's param_space) live next to each
kind's fields as functions returning `(sub-path, message, points at the key?)`.
"""

from __future__ import annotations

import re
from typing import Any, Callable

DEMO_MODEL = "rayctl-demo"

# A check: value -> [(sub-path below the field, message, points at a key?)].
Check = Callable[[Any], list]

NON_BLANK = r"\S"


def _frag(t, default, doc, **kw) -> dict:
    out: dict = {"type": t} if t else {}
    if doc:
        out["description"] = doc
    if default is not None:
        out["default"] = default
    out.update({k: v for k, v in kw.items() if v is not None})
    return out


def integer(default=None, doc="", *, minimum=None, maximum=None) -> dict:
    return _frag("integer", default, doc, minimum=minimum, maximum=maximum)


def number(default=None, doc="", *, minimum=None, above=None, maximum=None) -> dict:
    return _frag("number", default, doc, minimum=minimum, exclusiveMinimum=above, maximum=maximum)


def boolean(default=None, doc="") -> dict:
    return _frag("boolean", default, doc)


def string(default=None, doc="") -> dict:
    """A non-empty (not only blanks) string."""
    return _frag("string", default, doc, pattern=NON_BLANK, **{"x-error": "expected a non-empty string, got {got}"})


def choice(choices, default=None, doc="") -> dict:
    return _frag(None, default, doc, enum=list(choices))


def mapping(default=None, doc="", **kw) -> dict:
    return _frag("object", default, doc, **kw)


def array(default=None, doc="", **kw) -> dict:
    return _frag("array", default, doc, **kw)


def auto_or_number(default="auto", doc="") -> dict:
    """`auto` or a number >= 0 (GPU counts that default to what the cluster has)."""
    return _frag(None, default, doc, anyOf=[{"enum": ["auto"]}, {"type": "number", "minimum": 0}],
                 **{"x-error": "expected auto or a number >= 0, got {got}"})


COMMON_DOC = {
    "env": "environment variables for the job and its workers (mapping of strings)",
    "pip": "extra pip packages installed into the job's runtime environment",
    "resource_timeout_s": "seconds to wait for the CPUs/GPUs the workload needs before failing",
}

# Keys every built-in accepts besides its own.
COMMON_FIELDS: dict[str, dict] = {
    "env": mapping(None, COMMON_DOC["env"], additionalProperties={
        "type": ["string", "number"], "x-error": "environment values are strings, got {got}"}),
    "pip": array(None, COMMON_DOC["pip"], items={
        "type": "string", "pattern": NON_BLANK, "x-error": "expected a package requirement string, got {got}"}),
    "resource_timeout_s": number(120, COMMON_DOC["resource_timeout_s"], above=0),
}

# Keys of the user-code form of `workload:` (any kind; chosen by `entrypoint`).
USER_CODE_KEYS = ("entrypoint", "working_dir", "pip", "env", "entrypoint_num_cpus", "entrypoint_num_gpus")
_PIP_LIST = "expected a list of pip requirements or a requirements.txt path"
_CPUS = {"type": ["number", "null"], "minimum": 0, "x-error": "expected a number >= 0, got {value!r}"}
USER_CODE: dict = {
    "type": "object",
    "description": "your own code: a command run with the recipe's folder layout",
    "required": ["entrypoint"],
    "additionalProperties": False,
    "x-unknown": {"where": " for your own code (workload.entrypoint is set)",
                  "allowed": "a workload with an entrypoint takes"},
    "properties": {
        "entrypoint": {"type": "string", "pattern": NON_BLANK, "description": "the command to run",
                       "x-error": 'expected the command to run, e.g. "python train.py --epochs 3"'},
        "working_dir": {"type": ["string", "null"], "pattern": NON_BLANK,
                        "description": "folder shipped to the cluster (relative to the recipe file)",
                        "x-error": "expected a directory path (relative to the recipe file)"},
        "pip": {"anyOf": [{"type": "null"},
                          {"type": "array", "items": {"type": "string", "pattern": NON_BLANK,
                                                      "x-error": 'expected a pip requirement string, e.g. '
                                                                 '"requests>=2"'}},
                          {"type": "string", "pattern": NON_BLANK}],
                "description": "pip requirements, or a requirements.txt path (relative to the recipe file)",
                "x-error": _PIP_LIST},
        "env": {"type": ["object", "null"], "description": "environment variables of the job",
                "x-error": "expected a mapping of environment variable names to values",
                "propertyNames": {"pattern": "^[^=\\x00]+$",
                                  "x-error": "'{value}' is not a valid environment variable name"},
                "additionalProperties": {"type": ["string", "number", "boolean"],
                                         "x-error": "expected a string, number or boolean value"}},
        "entrypoint_num_cpus": dict(_CPUS, description="CPUs reserved for the entrypoint command"),
        "entrypoint_num_gpus": dict(_CPUS, description="GPUs reserved for the entrypoint command"),
    },
}


def builtin_section(kind: str, fields: dict[str, dict], required=()) -> dict:
    """The schema of a built-in runner's `workload:` section (strict: unknown keys are errors)."""
    out: dict = {
        "type": "object",
        "additionalProperties": False,
        "properties": {**fields, **COMMON_FIELDS},
        "x-unknown": {"where": f" for the built-in {kind} workload",
                      "elsewhere": {"working_dir": "'working_dir' belongs to user code, which needs 'entrypoint' "
                                                   "(e.g. entrypoint: python main.py); the built-in "
                                                   f"{kind} runner does not take it"}},
        "x-missing": f"required field '{{key}}' is missing from the {kind} workload{{about}}",
    }
    if required:
        out["required"] = list(required)
    return out


def workload_schema(kind: str, fields: dict[str, dict], required=()) -> dict:
    """`workload:` of `kind`: your own code when it has `entrypoint`, else the built-in runner's settings."""
    return {"if": {"type": "object", "required": ["entrypoint"]}, "then": USER_CODE,
            "else": builtin_section(kind, fields, required)}


def with_defaults(workload: dict | None, fields: dict[str, dict]) -> dict:
    """The workload settings with every default filled in (None where the runner computes one)."""
    out = {k: f.get("default") for k, f in {**fields, **COMMON_FIELDS}.items()}
    out.update({k: v for k, v in (workload or {}).items() if v is not None or k not in out})
    return out


_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(path: str) -> bool:
    return bool(_URI.match(str(path)))


LOCAL_SCHEMES = ("file", "local")


def shared_storage(wl: dict, key: str, nodes: int, target: str, default_doc: str,
                   why: str = "each node would keep its own copy and a resumed run would not find it") -> list:
    """`workload.<key>` must be storage every node reaches when the run spans nodes on a cluster
    that is not this machine (the cloud, or an existing cluster at http(s)://): an object store
    URI, not a local folder (each node would write its own, and a resumed run finds nothing).
    On the local target (every node on this machine) a local folder is fine."""
    if nodes <= 1 or target == "local" or not isinstance(target, str):
        return []
    value = wl.get(key)
    where = "the cloud" if target == "cloud" else "an existing cluster"
    if value is None:
        path, what = (), f"is not set, so it defaults to a local folder ({default_doc})"
    elif is_uri(value) and str(value).split("://", 1)[0].lower() not in LOCAL_SCHEMES:
        return []
    else:
        path, what = (key,), f"'{value}' is a local path"
    return [(path, f"{key} {what}, but with resources.nodes: {nodes} on {where} (target: {target}) "
                   f"{why}; use storage every node can reach: s3://bucket/path or gs://bucket/path", False)]


def describe(value) -> str:
    """A value in words, for messages: "string 'x'", "number 3", "a list", ..."""
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


def show(c) -> str:
    return str(c).lower() if isinstance(c, bool) else str(c)
