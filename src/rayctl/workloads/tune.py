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

from .. import protocol
from . import common, demo_task
from ..recipe.kinds.tune import FIELDS, KIND, METRICS, RULES, SAMPLERS, grid_size, param_errors, total_trials
from ..settings import rayctl_home


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


def settings(recipe) -> dict:
    wl = common.with_defaults(recipe.workload, FIELDS)
    wl["mode"] = wl.get("mode") or METRICS[wl["metric"]]
    storage = wl.get("storage") or str(rayctl_home() / "tune")
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
    node = common.node_id()  # for the run's nodes_used
    loader = DataLoader(TensorDataset(xt, yt), batch_size=int(hp["batch_size"]), shuffle=True)
    for epoch in range(max_epochs):
        train_loss = demo_task.train_epoch(net, loader, opt)
        val_loss, acc = demo_task.evaluate(net, xv, yv)
        tune.report({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "accuracy": acc,
                     "node_id": node})


def _progress_callback(total: int):
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self):
            self.done = 0
            self.failed = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            last = trial.last_result or {}
            protocol.progress(self.done, total, "trials",
                            f"trial {trial.trial_id} finished after {last.get('epoch', '?')} epoch(s)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            self.failed += 1
            protocol.progress(self.done, total, "trials", f"trial {trial.trial_id} failed")

    return Progress()


def main(p: dict) -> None:
    wl = p["workload"]
    common.connect()
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
    protocol.progress(0, wl["trials"], "trials", "starting")
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
    protocol.metrics(best_config=sampled, best_metric=value, metric=wl["metric"], mode=wl["mode"],
                   trials=len(results), trials_failed=len(results) - len(ok),
                   best_epochs=best.metrics.get("epoch"), storage=wl["storage"],
                   experiment=wl["experiment"],
                   nodes_used=common.nodes_used((r.metrics or {}).get("node_id") for r in results))


if __name__ == "__main__":
    common.run_main(main)
