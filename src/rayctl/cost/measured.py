"""The throughput a recorded run measured, and the GPUs to price it on.

Throughput = output_tokens / duration, where duration is the workload's own
`metrics.duration_s` when it reported one, else the run's `duration_s` (start to end,
wall clock: provisioning included, so a conservative figure). The request mix is the
run's average per row. The GPUs are `--gpu`, else the run recipe's
`resources.accelerators`, else the accelerator the ledger recorded for the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError


@dataclass
class Measured:
    run: dict  # the ledger row
    output_tokens_per_s: float
    duration_s: float
    duration_source: str
    mix: tuple[int, int] | None  # (input, output) tokens per row
    recipe: object | None  # the run's Recipe, when readable
    recipe_problem: str | None = None  # why not, when not
    notes: list[str] = field(default_factory=list)


def get_run(ledger, run_id: str) -> dict:
    try:
        return ledger.get(run_id)
    except KeyError:
        raise InputError(_unknown_run(ledger, run_id)) from None


def measure(run: dict) -> Measured:
    """Throughput and request mix of a recorded run; InputError when it has none."""
    rid = run["id"]
    out_tok = run.get("output_tokens")
    if not out_tok or out_tok <= 0:
        raise InputError(f"--run {rid}: the run recorded no output tokens (kind {run['kind']}, status "
                         f"{run['status']}); a throughput needs a workload that reports output_tokens "
                         "(batch-infer or serve). State one with --throughput TOK_S instead.")
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    dur, src = None, None
    m_dur = metrics.get("duration_s")
    if isinstance(m_dur, (int, float)) and not isinstance(m_dur, bool) and m_dur > 0:
        dur, src = float(m_dur), "metrics.duration_s (reported by the workload)"
    elif run.get("duration_s"):
        dur, src = float(run["duration_s"]), "runs.duration_s (whole run, start to end, wall clock)"
    if not dur or dur <= 0:
        raise InputError(f"--run {rid}: the run has no duration yet (status {run['status']}); wait for it to "
                         "finish, or state a throughput with --throughput TOK_S.")
    rows = run.get("rows") or 0
    mix = (round((run.get("input_tokens") or 0) / rows), max(1, round(out_tok / rows))) if rows > 0 else None
    notes: list[str] = []
    recipe, problem = run_recipe(run, notes)
    return Measured(run=run, output_tokens_per_s=out_tok / dur, duration_s=dur, duration_source=src, mix=mix,
                    recipe=recipe, recipe_problem=problem, notes=notes)


def is_api_run(run: dict) -> bool:
    """A batch-infer `engine: http` run against a managed API (metrics.engine http + metrics.api)."""
    m = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    return m.get("engine") == "http" and isinstance(m.get("api"), dict)


def model_name(m: Measured) -> str | None:
    """The model a run served: from its metrics, else its recipe's workload.model."""
    for src in (m.run.get("metrics"), getattr(m.recipe, "workload", None)):
        if isinstance(src, dict) and isinstance(src.get("model"), str):
            return src["model"]
    return None


def accelerators(m: Measured, gpu_spec) -> tuple[tuple, str, int]:
    """(accelerator specs, label for messages, nodes) to price the run's throughput on."""
    from ..recipe.accelerators import AcceleratorSpec

    run = m.run
    nodes = int(run.get("nodes") or 1)
    if gpu_spec is not None:
        return (gpu_spec,), f"--gpu {gpu_spec}", nodes
    if m.recipe is not None and m.recipe.resources.accelerators:
        return tuple(m.recipe.resources.accelerators), m.recipe.path, m.recipe.resources.nodes
    if run.get("accelerator"):
        return (AcceleratorSpec(run["accelerator"], int(run.get("accelerator_count") or 1)),), f"run {run['id']}", nodes
    why = (f"its recipe {run.get('recipe_path')} names no resources.accelerators" if m.recipe is not None
           else m.recipe_problem)
    raise InputError(f"--run {run['id']}: no GPU to price its throughput on: {why}. "
                     "Pass --gpu NAME:COUNT (e.g. --gpu A100-80GB:1).")


def run_recipe(run: dict, notes: list[str]):
    """(the recipe a run was launched from, None) or (None, why it cannot be read).

    Only `resources` matter here: when the whole recipe no longer validates (edited since,
    or a stricter workload check), its resources alone are used, with a note.
    """
    from .. import recipe as recipe_mod
    from ..errors import RecipeError

    p = run.get("recipe_path")
    if not p:
        return None, "the ledger records no recipe path for it"
    try:
        rec = recipe_mod.load(p)
    except RecipeError as e:
        first = e.problems[0].message if e.problems else str(e)
        rec = _resources_only(p)
        if rec is None:
            return None, f"its recipe {p} cannot be read ({first})"
        notes.append(f"Recipe {p} does not validate now ({first}); only its resources were used.")
    if run.get("recipe_sha256") and rec.sha256 and rec.sha256 != run["recipe_sha256"]:
        notes.append(f"Recipe {p} changed since run {run['id']}; its current resources were used.")
    return rec, None


def _resources_only(path: str):
    from ..recipe.model import build
    from ..recipe.yamlsafe import Fail, load as load_yaml

    import os

    if not os.path.isfile(path):  # a FIFO or device would block the read
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
        doc = load_yaml(data).value
        res = doc.get("resources") if isinstance(doc, dict) else None
        if not isinstance(res, dict):
            return None
        return build({"name": str(doc.get("name") or "recipe"), "kind": str(doc.get("kind") or "batch-infer"),
                      "resources": res}, path, data)
    except (OSError, Fail, ValueError, TypeError, AttributeError):
        return None


def _unknown_run(led, run_id: str) -> str:
    matches = [r["id"] for r in led.runs() if r["id"].startswith(run_id)] if run_id else []
    if len(matches) > 1:
        return (f"--run {run_id}: ambiguous, {len(matches)} runs start with it: {', '.join(matches[:5])}"
                + (" ..." if len(matches) > 5 else ""))
    recent = [r["id"] for r in led.runs(limit=5)]
    hint = f" Recent runs: {', '.join(recent)}." if recent else " The ledger has no runs yet."
    return f"--run {run_id}: no such run in the ledger {led.path}.{hint} (`rayctl cost report` lists them.)"
