"""Built-in `tune` workload: Ray Tune over a search space written in the recipe.

Each trial trains the demo MLP (`demo_task`) for up to `max_epochs` and reports
`val_loss`, `accuracy` and `train_loss` every epoch; ASHA stops poor trials early
(`scheduler: fifo` runs every trial to the end). The best trial's config and metric are
printed and reported (`best_config`, `best_metric`).

`param_space` maps hyperparameter names of the demo model to a constant or to one
sampler, written as a one-key mapping::

    lr:          {loguniform: [0.0001, 0.1]}   # low, high (both > 0)
    dropout:     {uniform: [0.0, 0.3]}         # low, high
    hidden:      {choice: [32, 64, 128]}       # one of the values, sampled
    batch_size:  {grid: [32, 64]}              # every value, for every sample
    layers:      {randint: [1, 4]}             # integer in [low, high)
    weight_decay: 0.0001                       # constant

Total trials = num_samples x the product of the grid sizes.
"""

from __future__ import annotations

import difflib

from . import common, demo_task, report
from .common import Field

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
        if name not in demo_task.HYPERPARAMS:
            close = difflib.get_close_matches(str(name), list(demo_task.HYPERPARAMS), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"the demo model takes: {', '.join(demo_task.HYPERPARAMS)}"
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
        return f"'{name}' takes {'whole ' if is_int else ''}numbers, got {common._describe(v)}"
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


def to_tune(space: dict) -> dict:
    """The Ray Tune search space of a checked param_space."""
    from ray import tune

    out = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            out[name] = spec
            continue
        (kind, args), = spec.items()
        if kind == "uniform":
            out[name] = tune.uniform(float(args[0]), float(args[1]))
        elif kind == "loguniform":
            out[name] = tune.loguniform(float(args[0]), float(args[1]))
        elif kind == "randint":
            out[name] = tune.randint(int(args[0]), int(args[1]))
        elif kind == "choice":
            out[name] = tune.choice(list(args))
        elif kind == "grid":
            out[name] = tune.grid_search(list(args))
    return out


# ---------------------------------------------------------------- recipe check

def _check_space(doc, path, value, problems) -> None:
    for sub, msg, key in param_errors(value):
        problems.append(common.problem(doc, path + sub, msg, key=key))


def _check_metric_mode(doc, wl: dict, problems: list) -> None:
    mode = doc.value["workload"].get("mode")
    natural = METRICS[wl["metric"]]
    if mode is not None and mode != natural:
        problems.append(common.problem(doc, ("workload", "mode"),
                                       f"mode '{mode}' with metric '{wl['metric']}' would pick the worst trial; "
                                       f"did you mean mode: {natural}?"))
    if wl["scheduler"] == "asha" and wl["grace_period"] > wl["max_epochs"]:
        problems.append(common.problem(doc, ("workload", "grace_period"),
                                       f"grace_period ({wl['grace_period']}) is above max_epochs ({wl['max_epochs']})"))


FIELDS: dict[str, Field] = {
    "param_space": Field("mapping", None, "hyperparameter -> constant or {uniform|loguniform|randint|choice|grid: ...}",
                         required=True, check=_check_space),
    "num_samples": Field("int", 8, "samples drawn from the space (each repeats the whole grid)", minimum=1,
                         maximum=10000),
    "metric": Field("choice", "val_loss", "metric to optimize: val_loss, train_loss or accuracy",
                    choices=tuple(METRICS)),
    "mode": Field("choice", None, "min or max (default: min for losses, max for accuracy)", choices=("min", "max")),
    "scheduler": Field("choice", "asha", "asha (early stopping, default) or fifo (every trial runs to the end)",
                       choices=("asha", "fifo")),
    "max_epochs": Field("int", 10, "epochs per trial at most (ASHA's max_t)", minimum=1, maximum=10000),
    "grace_period": Field("int", 1, "epochs before ASHA may stop a trial", minimum=1),
    "reduction_factor": Field("number", 3, "ASHA's reduction factor", above=1),
    "max_concurrent": Field("int", None, "trials run at once (default: as many as the cluster fits)", minimum=1),
    "cpus_per_trial": Field("number", 1, "CPUs reserved per trial (fractions allowed)", above=0),
    "gpus_per_trial": Field("number", 0, "GPUs reserved per trial", minimum=0),
    "samples": Field("int", 2048, "size of the synthetic dataset", minimum=100),
    "seed": Field("int", None, "seed of the random search (same seed, same configs)"),
    "time_budget_s": Field("number", None, "stop starting/continuing trials after this many seconds", above=0),
    "storage": Field("str", None, "where trial results go (in <storage>/<recipe>-<run id>): a local path "
                                  "(relative to the recipe) or s3://...; default $RAYCTL_HOME/tune"),
}
_check = common.register(KIND, FIELDS, extra=_check_metric_mode)


def settings(recipe) -> dict:
    wl = common.with_defaults(recipe.workload, FIELDS)
    wl["mode"] = wl.get("mode") or METRICS[wl["metric"]]
    storage = wl.get("storage") or str(common.rayctl_home() / "tune")
    wl["storage"] = common.resolve_path(storage, common.recipe_dir(recipe))
    wl["trials"] = total_trials(wl["param_space"], wl["num_samples"])
    return wl


def job_spec(recipe, run_id: str):
    wl = settings(recipe)
    wl["experiment"] = f"{recipe.name}-{run_id}"
    return common.make_spec(recipe, run_id, "tune", wl, needs_cpus=wl["cpus_per_trial"],
                            needs_gpus=wl["gpus_per_trial"],
                            metadata={"storage": wl["storage"], "experiment": wl["experiment"],
                                      "trials": wl["trials"]})


# ---------------------------------------------------------------- on the cluster

def trainable(config: dict, max_epochs: int, samples: int, threads: int) -> None:
    import torch
    from ray import tune
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(max(1, threads))
    hp = {**demo_task.DEFAULTS, **config}
    torch.manual_seed(0)
    net = demo_task.model(hp["hidden"], hp["layers"], hp["dropout"])
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    xt, yt, xv, yv = demo_task.dataset(samples)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=int(hp["batch_size"]), shuffle=True)
    for epoch in range(max_epochs):
        train_loss = demo_task.train_epoch(net, loader, opt)
        val_loss, acc = demo_task.evaluate(net, xv, yv)
        tune.report({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "accuracy": acc})


def _progress_callback(total: int):
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self):
            self.done = 0
            self.failed = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            last = trial.last_result or {}
            report.progress(self.done, total, "trials",
                            f"trial {trial.trial_id} finished after {last.get('epoch', '?')} epoch(s)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            self.failed += 1
            report.progress(self.done, total, "trials", f"trial {trial.trial_id} failed")

    return Progress()


def main(p: dict) -> None:
    wl = p["workload"]
    ray = common.connect()
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    cpus, gpus = float(wl["cpus_per_trial"]), float(wl["gpus_per_trial"])
    common.wait_for_resources(cpus, gpus, float(wl["resource_timeout_s"]), "a tune trial")
    total_cpu, total_gpu = common.cluster_totals()
    fit = int(total_cpu // cpus) if cpus else 1
    if gpus:
        fit = min(fit, int(total_gpu // gpus))
    concurrent = max(1, min(wl.get("max_concurrent") or fit, fit, wl["trials"]))
    if wl["scheduler"] == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=int(wl["max_epochs"]),
                                  grace_period=int(wl["grace_period"]),
                                  reduction_factor=float(wl["reduction_factor"]))
    else:
        scheduler = FIFOScheduler()
    resources = {"cpu": cpus} | ({"gpu": gpus} if gpus else {})
    fn = tune.with_resources(tune.with_parameters(trainable, max_epochs=int(wl["max_epochs"]),
                                                  samples=int(wl["samples"]), threads=max(1, int(cpus))),
                             resources)
    from .train import _claim

    _claim(p, wl, KIND)  # the same rule as train: never let Tune write into a folder holding foreign files
    progress = _progress_callback(wl["trials"])
    print(f"rayctl: tuning {wl['trials']} trial(s), {concurrent} at a time, metric {wl['metric']} ({wl['mode']}), "
          f"scheduler {wl['scheduler']}", flush=True)
    report.progress(0, wl["trials"], "trials", "starting")
    tuner = tune.Tuner(
        fn,
        param_space=to_tune(wl["param_space"]),
        tune_config=tune.TuneConfig(
            metric=wl["metric"], mode=wl["mode"], num_samples=int(wl["num_samples"]), scheduler=scheduler,
            max_concurrent_trials=concurrent, time_budget_s=wl.get("time_budget_s"),
            search_alg=BasicVariantGenerator(random_state=wl.get("seed"))),
        run_config=tune.RunConfig(name=wl["experiment"], storage_path=wl["storage"], callbacks=[progress],
                                  verbose=1),
    )
    results = tuner.fit()
    ok = [r for r in results if r.error is None and r.metrics and wl["metric"] in r.metrics]
    if not ok:
        first = next((r.error for r in results if r.error is not None), None)
        raise common.WorkloadError(f"all {len(results)} trial(s) failed" + (f"; first error: {first}" if first else ""))
    best = results.get_best_result(metric=wl["metric"], mode=wl["mode"])
    sampled = {k: v for k, v in best.config.items() if k in wl["param_space"]}
    value = best.metrics[wl["metric"]]
    print(f"rayctl: best trial: {wl['metric']}={value:.4f} config={sampled} "
          f"({len(ok)} of {len(results)} trial(s) ok, {progress.failed} failed)", flush=True)
    report.metrics(best_config=sampled, best_metric=value, metric=wl["metric"], mode=wl["mode"],
                   trials=len(results), trials_failed=len(results) - len(ok),
                   best_epochs=best.metrics.get("epoch"), storage=wl["storage"],
                   experiment=wl["experiment"])


if __name__ == "__main__":
    common.run_main(main)
