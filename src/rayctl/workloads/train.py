"""Built-in `train` workload: data-parallel PyTorch training with Ray Train's TorchTrainer.

Demo task: the MLP classifier of `demo_task` on its synthetic dataset. Every epoch rank 0
saves a checkpoint (model, optimizer, epoch) to `workload.storage` (a local path or
s3://...) under the recipe's name. Relaunching the same recipe finds the run's
checkpoint snapshot there and resumes from the latest epoch (the way spot recovery
continues a preempted run); `resumed_from` in the metrics says where it started.

Run on a cluster as `python -m rayctl.workloads.train` with $RAYCTL_WORKLOAD set.
"""

from __future__ import annotations

from .. import protocol
from . import common
from ..recipe.kinds.train import FIELDS, KIND  # noqa: F401  (the one definition of the fields)
from ..settings import rayctl_home


def settings(recipe) -> dict:
    wl = common.with_defaults(recipe.workload, FIELDS)
    storage = wl.get("storage") or str(rayctl_home() / "checkpoints")
    wl["storage"] = common.resolve_path(storage, common.recipe_dir(recipe))
    wl["experiment"] = recipe.name
    nodes = int(recipe.resources.nodes or 1)
    if wl.get("workers") is None:  # one rank per GPU of every node (1 per node on CPUs); 2 on one node
        gpus_per_node = max((a.count for a in recipe.resources.accelerators), default=0)
        wl["workers"] = nodes * max(1, gpus_per_node) if nodes > 1 else 2
    if wl.get("max_failures") is None:  # a multi-node run survives one lost node by default
        wl["max_failures"] = 1 if nodes > 1 else 0
    return wl


def job_spec(recipe, run_id: str):
    wl = settings(recipe)
    gpus = wl["workers"] * wl["gpus_per_worker"] if wl["use_gpu"] is True else 0
    return common.make_spec(recipe, run_id, "train", wl, needs_cpus=wl["workers"] * wl["cpus_per_worker"],
                            needs_gpus=gpus,
                            metadata={"storage": wl["storage"], "experiment": wl["experiment"]})


# ---------------------------------------------------------------- on the cluster

def train_loop(config: dict) -> None:
    """Per-worker loop: restore the latest checkpoint if any, train the missing epochs."""
    import os
    import tempfile

    import ray
    import ray.train
    import ray.train.torch
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from . import demo_task

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.manual_seed(0)
    net = demo_task.model(config["hidden"], config["layers"])
    start, opt_state = 0, None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"), map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        opt_state = state["optimizer"]
        start = int(state["epoch"])
    resumed_from = start if ckpt is not None else None
    nodes_used = 1
    if ctx.get_world_size() > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        ids = [None] * ctx.get_world_size()
        torch.distributed.all_gather_object(ids, ray.get_runtime_context().get_node_id())
        nodes_used = len(set(ids))
    epochs = int(config["epochs"])
    net = ray.train.torch.prepare_model(net)
    module = getattr(net, "module", net)
    opt = torch.optim.Adam(net.parameters(), lr=config["lr"])
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    xt, yt, xv, yv = demo_task.dataset(config["samples"])
    loader = ray.train.torch.prepare_data_loader(
        DataLoader(TensorDataset(xt, yt), batch_size=config["batch_size"], shuffle=True))
    device = ray.train.torch.get_device()
    xv, yv = xv.to(device), yv.to(device)
    if rank == 0 and resumed_from is not None:
        print(f"rayctl: resuming from the checkpoint of epoch {start} ({ckpt.path})", flush=True)
    if start >= epochs:
        # Nothing left to train. Report the restored state as a checkpoint again: Ray
        # Train's result carries the metrics of the latest checkpoint, not of bare reports.
        val_loss, acc = demo_task.evaluate(module, xv, yv)
        metrics = {"epoch": start, "epochs": epochs, "val_loss": val_loss, "accuracy": acc,
                   "resumed_from": resumed_from, "already_complete": True, "nodes_used": nodes_used}
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save({"model": module.state_dict(), "optimizer": opt.state_dict(), "epoch": start},
                           os.path.join(tmp, "state.pt"))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            protocol.progress(start, epochs, "epochs", f"already trained {start} of {epochs} epochs; nothing to do")
        else:
            ray.train.report(metrics)
        return
    for epoch in range(start, epochs):
        if ctx.get_world_size() > 1 and hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        train_loss = demo_task.train_epoch(net, loader, opt)
        val_loss, acc = demo_task.evaluate(module, xv, yv)
        metrics = {"epoch": epoch + 1, "epochs": epochs, "train_loss": train_loss, "val_loss": val_loss,
                   "accuracy": acc, "resumed_from": resumed_from, "nodes_used": nodes_used}
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save({"model": module.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1},
                           os.path.join(tmp, "state.pt"))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            protocol.progress(epoch + 1, epochs, "epochs",
                            f"epoch {epoch + 1}/{epochs} train_loss={train_loss:.4f} val_loss={val_loss:.4f} "
                            f"accuracy={acc:.3f}")
        else:
            ray.train.report(metrics)


def _uri(storage: str, fs_path: str) -> str:
    """A checkpoint's path as the user wrote storage: keep the scheme of s3:// storage."""
    if common.is_uri(storage) and not common.is_uri(fs_path):
        return f"{storage.split('://', 1)[0]}://{fs_path.lstrip('/')}"
    return fs_path


def _claim(p: dict, wl: dict, kind: str = KIND) -> None:
    """Refuse an experiment folder holding files rayctl did not write; claim it with a manifest."""
    from . import output

    try:
        output.claim_experiment(wl["storage"], wl["experiment"], recipe=p.get("recipe") or "", kind=kind,
                                run_id=p.get("run_id") or "")
    except output.Refused as e:
        raise common.WorkloadError(str(e)) from None


def main(p: dict) -> None:
    wl = p["workload"]
    ray = common.connect()
    import ray.train
    from ray.train.torch import TorchTrainer

    workers = int(wl["workers"])
    _, total_gpus = common.cluster_totals()
    gpus_each = float(wl["gpus_per_worker"])
    use_gpu = wl["use_gpu"]
    if use_gpu == "auto":
        use_gpu = total_gpus >= workers * gpus_each
        print(f"rayctl: use_gpu=auto -> {'GPUs' if use_gpu else 'CPUs'} "
              f"(cluster has {total_gpus:g} GPU for {workers} worker(s))", flush=True)
    cpus_each = float(wl["cpus_per_worker"])
    common.wait_for_resources(workers * cpus_each, workers * gpus_each if use_gpu else 0,
                              float(wl["resource_timeout_s"]), f"training with {workers} worker(s)")
    _claim(p, wl)
    per_worker = {"CPU": cpus_each}
    if use_gpu:
        per_worker["GPU"] = gpus_each
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={k: wl[k] for k in ("epochs", "batch_size", "lr", "hidden", "layers", "samples")},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=bool(use_gpu),
                                               resources_per_worker=per_worker, placement_strategy="SPREAD"),
        run_config=ray.train.RunConfig(
            name=wl["experiment"], storage_path=wl["storage"],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=int(wl["keep_checkpoints"])),
            failure_config=ray.train.FailureConfig(max_failures=int(wl["max_failures"]))),
    )
    result = trainer.fit()
    m = dict(result.metrics or {})
    epoch = int(m.get("epoch", 0))
    resumed_from = m.get("resumed_from")
    out = {
        "epochs": epoch,
        "epochs_run": epoch - int(resumed_from or 0),
        "resumed_from": resumed_from,
        "val_loss": m.get("val_loss"),
        "accuracy": m.get("accuracy"),
        "storage": wl["storage"],
        "experiment": wl["experiment"],
        "workers": workers,
        "nodes_used": int(m.get("nodes_used") or 1),
    }
    if result.checkpoint is not None:
        out["checkpoint"] = _uri(wl["storage"], result.checkpoint.path)
    print(f"rayctl: trained {out['epochs_run']} epoch(s) "
          f"({'resumed from epoch ' + str(resumed_from) if resumed_from is not None else 'from scratch'}), "
          f"{epoch}/{wl['epochs']} done; val_loss={out['val_loss']} accuracy={out['accuracy']}; "
          f"checkpoint: {out.get('checkpoint')}", flush=True)
    protocol.metrics(**out)


if __name__ == "__main__":
    common.run_main(main)
