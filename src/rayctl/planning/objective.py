"""The plan's objective: `hourly` ($/h) or `per-token` ($ per 1M output tokens), and for
per-token the cluster throughput attached to each ranked row (`planning.throughputs` figures:
stated, measured, published or scaled)."""

from __future__ import annotations

from ..errors import InputError
from ..recipe import Recipe


OBJECTIVES = ("per-token", "hourly")


def objective_for(recipe: Recipe, flag: str | None = None) -> str:
    """`--objective`, else `resources.objective`, else per-token for batch-infer/serve, hourly otherwise."""
    if flag is not None:
        if flag not in OBJECTIVES:
            raise InputError(f"--objective {flag}: must be one of {', '.join(OBJECTIVES)}")
        return flag
    obj = getattr(recipe.resources, "objective", None)
    if obj:
        return obj
    return "per-token" if recipe.kind in ("batch-infer", "serve") else "hourly"


def recipe_model(recipe: Recipe) -> tuple[str | None, str | None]:
    """(model, engine) of a recipe's workload, for throughput figures."""
    wl = recipe.workload if isinstance(recipe.workload, dict) else {}
    model = wl.get("model") if isinstance(wl.get("model"), str) else None
    engine = wl.get("engine") if isinstance(wl.get("engine"), str) else None
    if engine is None and recipe.kind == "serve":
        engine = "transformers"  # the built-in serve app runs the model with Hugging Face transformers
    return model or "rayctl-demo", engine


def attach_throughput(groups: list, figures, nodes: int) -> tuple[list, dict]:
    """Rows become (effective $/1M output tokens, cluster $/h, offer, effective $/h, cluster tok/s);
    a missing figure gives key inf and tok/s None."""
    figs: dict = {}  # canonical accelerator name -> Figure | None
    tps: dict = {}  # (accelerator, count) -> cluster output tokens/s | None
    out = []
    inf = float("inf")
    for g in groups:
        rows = []
        for eff, cluster, o in g:
            k = (o.accelerator, o.count)
            t = tps.get(k, 0)
            if t == 0:
                f = figs[o.accelerator] if o.accelerator in figs else figures.figure(o.accelerator)
                figs[o.accelerator] = f
                t = tps[k] = f.tokens_per_s(o.count, nodes) if f is not None else None
            rows.append((eff / (t * 3600.0) * 1e6 if t else inf, cluster, o, eff, t))
        out.append(rows)
    return out, figs
