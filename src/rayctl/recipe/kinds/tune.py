"""Fields of the built-in `tune` workload and the checks of its param_space (see docs/workloads.md)."""

from __future__ import annotations

import difflib

from .base import choice, describe, integer, mapping, number, shared_storage, string

# The hyperparameters the demo model (workloads/demo_task.py) takes; tune's param_space may set these.
HYPERPARAMS = {
    "lr": "learning rate of the Adam optimizer",
    "hidden": "width of each hidden layer",
    "layers": "number of hidden layers",
    "dropout": "dropout probability after each hidden layer",
    "batch_size": "examples per step per worker",
    "weight_decay": "L2 weight decay of Adam",
}

KIND = "tune"
SAMPLERS = ("uniform", "loguniform", "randint", "choice", "grid")
METRICS = {"val_loss": "min", "train_loss": "min", "accuracy": "max"}

# Per hyperparameter: (integer?, lowest allowed, highest allowed, highest is exclusive?)
RULES = {
    "lr": (False, 0.0, None, True),
    "hidden": (True, 1, 4096, False),
    "layers": (True, 1, 64, False),
    "dropout": (False, 0.0, 1.0, True),
    "batch_size": (True, 1, 65536, False),
    "weight_decay": (False, 0.0, None, False),
}


# ---------------------------------------------------------------- param_space

def param_errors(space) -> list[tuple[tuple, str, bool]]:
    """Problems in a param_space: (sub-path, message, points at a key?)."""
    if not isinstance(space, dict):
        return [((), "param_space is a mapping of hyperparameter -> constant or {sampler: [...]}", False)]
    if not space:
        return [((), "param_space is empty; give at least one hyperparameter, e.g. lr: {loguniform: [1e-4, 1e-1]}",
                 False)]
    out: list = []
    for name, spec in space.items():
        if name not in HYPERPARAMS:
            close = difflib.get_close_matches(str(name), list(HYPERPARAMS), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"the demo model takes: {', '.join(HYPERPARAMS)}"
            out.append(((name,), f"unknown hyperparameter '{name}'; {hint}", True))
            continue
        out.extend(_spec_errors(name, spec))
    return out


def _spec_errors(name: str, spec) -> list:
    is_int, lo, hi, hi_open = RULES[name]
    if isinstance(spec, list):
        return [((name,), f"a bare list is ambiguous for '{name}'; write {{choice: [...]}} to sample one value or "
                          f"{{grid: [...]}} to try them all", False)]
    if not isinstance(spec, dict):
        msg = _value_error(name, spec)
        return [((name,), msg, False)] if msg else []
    if len(spec) != 1:
        return [((name,), f"'{name}' takes one sampler, e.g. {{loguniform: [0.0001, 0.1]}}; "
                          f"got {len(spec)} keys ({', '.join(map(str, spec))})", False)]
    (kind, args), = spec.items()
    path = (name, kind)
    if kind not in SAMPLERS:
        close = difflib.get_close_matches(str(kind), SAMPLERS, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return [(path, f"unknown sampler '{kind}' (use one of: {', '.join(SAMPLERS)}){hint}", True)]
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            return [(path, f"{kind} takes a non-empty list of values, e.g. {{{kind}: [32, 64]}}", False)]
        errs = []
        for i, v in enumerate(args):
            msg = _value_error(name, v)
            if msg:
                errs.append((path + (i,), msg, False))
        return errs
    # uniform, loguniform, randint: [low, high]
    if not isinstance(args, list) or len(args) != 2 or any(
            isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
        return [(path, f"{kind} takes [low, high], two numbers, e.g. {{{kind}: {_example(kind)}}}", False)]
    a, b = args
    if is_int and kind != "randint":
        return [(path, f"'{name}' is a whole number; use randint: [low, high) or choice: [...] instead of {kind}",
                 True)]
    if kind == "randint" and not is_int:
        return [(path, f"'{name}' is a real number; use uniform or loguniform instead of randint", True)]
    if kind == "randint" and not (isinstance(a, int) and isinstance(b, int)):
        return [(path, "randint bounds are whole numbers", False)]
    if not a < b:
        return [(path, f"low must be below high, got [{a}, {b}]", False)]
    if kind == "loguniform" and a <= 0:
        return [(path, f"loguniform needs low > 0, got {a}", False)]
    errs = []
    for i, v in enumerate(args):
        msg = _value_error(name, v if (i == 0 or kind != "randint") else v - 1)
        if msg:
            errs.append((path + (i,), msg, False))
    return errs


def _example(kind: str) -> str:
    return {"uniform": "[0.0, 0.5]", "loguniform": "[0.0001, 0.1]", "randint": "[1, 4]"}[kind]


def _value_error(name: str, v) -> str | None:
    is_int, lo, hi, hi_open = RULES[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"'{name}' takes {'whole ' if is_int else ''}numbers, got {describe(v)}"
    if is_int and not isinstance(v, int):
        return f"'{name}' takes whole numbers, got {v}"
    if name == "lr" and v <= 0:
        return f"'lr' must be > 0, got {v}"
    if v < lo:
        return f"'{name}' must be >= {lo}, got {v}"
    if hi is not None and (v >= hi if hi_open else v > hi):
        return f"'{name}' must be {'<' if hi_open else '<='} {hi}, got {v}"
    return None


def grid_size(space: dict) -> int:
    n = 1
    for spec in space.values():
        if isinstance(spec, dict) and "grid" in spec:
            n *= len(spec["grid"])
    return n


def total_trials(space: dict, num_samples: int) -> int:
    return int(num_samples) * grid_size(space)


FIELDS: dict[str, dict] = {
    "param_space": mapping(None, "hyperparameter -> constant or {uniform|loguniform|randint|choice|grid: ...}"),
    "num_samples": integer(8, "samples drawn from the space (each repeats the whole grid)", minimum=1,
                           maximum=10000),
    "metric": choice(tuple(METRICS), "val_loss", "metric to optimize: val_loss, train_loss or accuracy"),
    "mode": choice(("min", "max"), None, "min or max (default: min for losses, max for accuracy)"),
    "scheduler": choice(("asha", "fifo"), "asha",
                        "asha (early stopping, default) or fifo (every trial runs to the end)"),
    "max_epochs": integer(10, "epochs per trial at most (ASHA's max_t)", minimum=1, maximum=10000),
    "grace_period": integer(1, "epochs before ASHA may stop a trial", minimum=1),
    "reduction_factor": number(3, "ASHA's reduction factor", above=1),
    "max_concurrent": integer(None, "trials run at once (default: as many as the cluster fits)", minimum=1),
    "cpus_per_trial": number(1, "CPUs reserved per trial (fractions allowed)", above=0),
    "gpus_per_trial": number(0, "GPUs reserved per trial", minimum=0),
    "samples": integer(2048, "size of the synthetic dataset", minimum=100),
    "seed": integer(None, "seed of the random search (same seed, same configs)"),
    "time_budget_s": number(None, "stop starting/continuing trials after this many seconds", above=0),
    "storage": string(None, "where trial results go (in <storage>/<recipe>-<run id>): a local path "
                            "(relative to the recipe) or s3://...; default $RAYCTL_HOME/tune"),
}
REQUIRED = ("param_space",)
FIELD_CHECKS = {"param_space": param_errors}


def extra(raw: dict, wl: dict) -> list:
    out = []
    mode = raw.get("mode")
    natural = METRICS[wl["metric"]]
    if mode is not None and mode != natural:
        out.append((("mode",), f"mode '{mode}' with metric '{wl['metric']}' would pick the worst trial; "
                               f"did you mean mode: {natural}?", False))
    if wl["scheduler"] == "asha" and wl["grace_period"] > wl["max_epochs"]:
        out.append((("grace_period",), f"grace_period ({wl['grace_period']}) is above max_epochs "
                                       f"({wl['max_epochs']})", False))
    return out


def target_checks(wl: dict, nodes: int, target: str) -> list:
    """Rules that depend on where the recipe runs: trial results every node reaches (multi-node, remote)."""
    return shared_storage(wl, "storage", nodes, target, "$RAYCTL_HOME/tune on the node running the job")
