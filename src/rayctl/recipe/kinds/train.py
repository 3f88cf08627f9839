"""Fields of the built-in `train` workload (see docs/workloads.md)."""

from __future__ import annotations

from .base import choice, integer, number, string

KIND = "train"
FIELDS: dict[str, dict] = {
    "workers": integer(None, "number of training workers (Ray Train data-parallel ranks); default 2 on one node, "
                             "nodes x GPUs per node (1 per node without GPUs) when nodes > 1",
                       minimum=1, maximum=1024),
    "use_gpu": choice(("auto", True, False), "auto",
                      "true, false, or auto (use GPUs when the cluster has one per worker)"),
    "cpus_per_worker": number(1, "CPUs reserved per worker (fractions allowed, e.g. 0.5)", above=0),
    "gpus_per_worker": number(1, "GPUs per worker when GPUs are used", above=0),
    "epochs": integer(5, "epochs to train in total (a resumed run trains only the missing ones)", minimum=1),
    "batch_size": integer(64, "examples per step per worker", minimum=1),
    "lr": number(1e-3, "learning rate (Adam)", above=0),
    "hidden": integer(64, "width of the demo MLP's hidden layers", minimum=1),
    "layers": integer(2, "hidden layers of the demo MLP", minimum=1, maximum=64),
    "samples": integer(4096, "size of the synthetic dataset (80% train, 20% validation)", minimum=100),
    "storage": string(None, "where checkpoints go: a local path (relative to the recipe) or s3://bucket/path; "
                            "default $RAYCTL_HOME/checkpoints"),
    "keep_checkpoints": integer(2, "checkpoints kept (older ones are deleted)", minimum=1),
    "max_failures": integer(None, "worker-group failures retried from the latest checkpoint; default 0 on one "
                                  "node, 1 when nodes > 1 (a lost node)", minimum=0),
}
REQUIRED: tuple = ()
FIELD_CHECKS: dict = {}


def extra(raw: dict, wl: dict) -> list:
    return []
