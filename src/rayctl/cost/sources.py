"""What `rayctl cost compare` prices: the GPU (`--gpu`, as a recipe for the planner, and
the planner's cheapest spot and on-demand offers for it) and the throughputs, from one of
four sources: a measured run (`--run`), a stated cluster figure (`--throughput`), a stated
per-GPU figure (`--gpu-throughput`), or the shipped reference figures (scaled to the GPU
count, or by memory bandwidth to another GPU). Formulas are in `compare.py`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InputError
from ..planning.throughputs import Throughput

if TYPE_CHECKING:  # pragma: no cover
    from ..recipe.accelerators import AcceleratorSpec

DEFAULT_MODEL = "llama-3.1-8b"
DEFAULT_INPUT_TOKENS = 1000
DEFAULT_OUTPUT_TOKENS = 250


# ---------------------------------------------------------------- what hardware to price

def parse_gpu(text: str, cat) -> "AcceleratorSpec":
    from ..recipe.accelerators import AcceleratorSpec, parse_spec

    try:
        return parse_spec(text)
    except ValueError as e:
        name, _, count = text.partition(":")
        canon = cat.accelerator_names().get(name.strip().lower()) if cat is not None else None
        if canon and (not count or count.strip().isdigit() and int(count) >= 1):
            return AcceleratorSpec(canon, int(count) if count else 1)
        raise InputError(f"--gpu {text}: {e}") from None


def synthetic_recipe(specs: tuple, label: str, nodes: int = 1):
    from ..recipe import Budget, Recipe, Resources, Teardown

    return Recipe(name="cost-compare", kind="batch-infer",
                  resources=Resources(accelerators=tuple(specs), nodes=nodes, spot="auto"),
                  budget=Budget(), target="cloud", teardown=Teardown(after="job"), schedule=None,
                  workload={}, path=label)


def cheapest_offers(recipe, cat) -> dict:
    """{'spot': Candidate|None, 'on-demand': Candidate|None} from the planner, ranking both modes."""
    from ..planning import planner

    r = dataclasses.replace(recipe, resources=dataclasses.replace(recipe.resources, spot="auto"),
                            budget=dataclasses.replace(recipe.budget, max_usd=None))
    plan = planner.plan(r, cat)
    out = {"spot": None, "on-demand": None}
    for c in plan.candidates:
        key = "spot" if c.spot else "on-demand"
        if out[key] is None:
            out[key] = c
    return out


@dataclass
class Source:
    """What to price: throughputs, on which GPUs (as a recipe for the planner), the default mix."""

    throughputs: list
    recipe: object
    mix: tuple[int, int] = (DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS)
    mix_source: str = "default"
    run: dict | None = None  # the `run` section of the output
    actual: dict | None = None  # a billed run's own cost
    notes: list = field(default_factory=list)


def from_run(run_id: str, spec, model: str | None, ledger) -> Source:
    """A recorded run's measured throughput, priced at cloud offers for its GPUs."""
    from ..ledger import Ledger
    from . import accounting, measured

    led = ledger or Ledger()
    try:
        run = measured.get_run(led, run_id)
        if measured.is_api_run(run):
            api = run["metrics"]["api"]
            raise InputError(f"--run {run['id']}: an API run ({api.get('provider')}:{api.get('model')}, engine http) "
                             "has no GPUs to price; compare it with a self-hosted run of the same prompts: "
                             f"--run SELF_HOSTED_RUN --run {run['id']}")
        m = measured.measure(run)
        specs, where, nodes = measured.accelerators(m, spec)
        billed = accounting.run_cost(led, run)
    finally:
        if ledger is None:
            led.close()
    label = ", ".join(str(s) for s in specs)
    if spec is None and m.recipe is not None and m.recipe.resources.accelerators:
        recipe = m.recipe  # keeps its clouds, regions, nodes, ... (the planner drops its budget)
    else:
        recipe = synthetic_recipe(specs, where, nodes=nodes)
    tp = Throughput(model=model or measured.model_name(m) or "", accelerator=label,
                    count=None, engine="measured", label="measured", output_tokens_per_s=m.output_tokens_per_s,
                    kind="measured", source=f"rayctl ledger run {run['id']}")
    notes = list(m.notes)
    cost = billed["cost_usd"]
    if cost > 0:
        notes.append(f"Run {run['id']} ran on {run['target']} and was billed {cost:,.4f} USD; its measured "
                     f"throughput is priced at the planner's cheapest spot and on-demand offers for {label}, and its "
                     "own billed cost is the 'actual' row.")
    else:
        notes.append(f"Run {run['id']} ran on target '{run['target']}' at $0/h, so it has no tokens per dollar of "
                     f"its own. Its measured throughput ({m.output_tokens_per_s:.4g} output tok/s) is priced at the "
                     f"planner's cheapest cloud offers for {label} x {recipe.resources.nodes} node(s): what that "
                     "throughput would cost there. It was measured on the hardware the run used, not on those GPUs; "
                     "a GPU usually runs faster.")
    notes.append(f"Measured throughput = output tokens / {m.duration_source}.")
    if run["status"] != "succeeded":
        notes.append(f"Run {run['id']} ended '{run['status']}': its throughput covers the part that ran.")
    actual = None
    if cost > 0:
        tokens = billed["tokens"] or 0
        actual = {"throughput": "measured", "kind": "actual", "mode": "+".join(sorted(billed["by_mode"])) or "-",
                  "offer": None, "hourly_usd": run.get("hourly_usd") or None, "output_tokens_per_s": m.output_tokens_per_s,
                  "usd_total": cost, "billed_node_hours": billed["billed_node_hours"],
                  "usd_per_1m_tokens": cost / tokens * 1e6 if tokens else None,
                  "tokens_per_usd": tokens / cost if tokens else None}
    run_doc = {"id": run["id"], "recipe": run["recipe"], "kind": run["kind"], "target": run["target"],
               "status": run["status"], "hourly_usd": run.get("hourly_usd"), "cost_usd": cost,
               "output_tokens_per_s": m.output_tokens_per_s, "duration_s": m.duration_s,
               "duration_source": m.duration_source, "rows": run.get("rows"), "input_tokens": run.get("input_tokens"),
               "output_tokens": run.get("output_tokens"), "priced_on": label, "nodes": recipe.resources.nodes}
    src = Source(throughputs=[tp], recipe=recipe, run=run_doc, actual=actual, notes=notes)
    if m.mix:
        src.mix, src.mix_source = m.mix, f"average per row of run {run['id']}"
    return src


def from_stated(throughput: float, spec, gpu: str | None, model: str | None) -> Source:
    if spec is None:
        raise InputError("--throughput needs --gpu NAME:COUNT: the GPU offer the stated throughput runs on "
                         "(e.g. --gpu A100-80GB:1)")
    tp = Throughput(model=model or "", accelerator=spec.name, count=spec.count, engine="stated", label="stated",
                    output_tokens_per_s=float(throughput), kind="stated", source="--throughput")
    return Source(throughputs=[tp], recipe=synthetic_recipe((spec,), f"--gpu {gpu}"))


def from_stated_per_gpu(stated: dict, spec, gpu: str | None, model: str | None) -> Source:
    """`--gpu-throughput ACC=TOK_S`: a per-GPU figure, x the GPUs of --gpu (or ACC:1)."""
    from ..recipe.accelerators import AcceleratorSpec

    if spec is None:
        if len(stated) != 1:
            raise InputError("--gpu-throughput names several accelerators; pick the one to price with --gpu NAME:COUNT")
        name = next(iter(stated))
        spec = AcceleratorSpec(_canon(name), 1)
        label = f"--gpu-throughput {name}={stated[name]:g}"  # what the user typed names the GPU
    else:
        label = f"--gpu {gpu}"
    per_gpu = stated.get(spec.name.lower())
    if per_gpu is None:
        raise InputError(f"--gpu {gpu}: no --gpu-throughput figure for {spec.name} (given for "
                         f"{', '.join(sorted(stated))})")
    tp = Throughput(model=model or "", accelerator=spec.name, count=spec.count, engine="stated", label="stated",
                    output_tokens_per_s=per_gpu * spec.count, kind="stated",
                    source=f"--gpu-throughput {spec.name}={per_gpu:g} per GPU x {spec.count}")
    return Source(throughputs=[tp], recipe=synthetic_recipe((spec,), label))


def _canon(name: str) -> str:
    from ..recipe.accelerators import canonical

    return canonical(name) or name


def from_measured(model: str | None, spec, cat, ledger_path=None) -> tuple[Throughput | None, object]:
    """(the ledger's measured figure for the model, the GPU it is on) as the planner reads it:
    the median output tok/s per GPU of the model's succeeded runs on that accelerator (any
    engine), x the GPUs priced. Without --gpu: the accelerator with the most such runs, x1.
    (None, spec) when the ledger has none. `ledger_path` None: $RAYCTL_HOME's ledger."""
    from ..planning import throughputs as tp_mod
    from ..recipe.accelerators import AcceleratorSpec

    name = model or DEFAULT_MODEL
    runs = tp_mod.measured_per_gpu(name, None, ledger_path)
    if spec is None and runs:
        acc = min(runs, key=lambda a: (-len(runs[a]), a))
        spec = AcceleratorSpec(cat.accelerator_names().get(acc, acc) if cat is not None else acc, 1)
    per = runs.get(spec.name.lower()) if spec is not None else None
    if not per:
        return None, spec
    med = tp_mod._median(per)
    return Throughput(model=name, accelerator=spec.name, count=spec.count, engine="measured",
                      label="measured (ledger)", output_tokens_per_s=med * spec.count, kind="measured",
                      source=f"median of {len(per)} succeeded run(s) of {name} on {spec.name} in the rayctl ledger: "
                             f"{med:,.1f} tok/s per GPU x {spec.count}"), spec


def from_references(model: str | None, spec, gpu: str | None, cat, ledger_path=None) -> Source:
    """The ledger's measured figure for the model when it has one (as the planner uses it), and
    the shipped published figures, on their GPU or scaled to --gpu's count."""
    from ..planning import throughputs as tp_mod

    measured_tp = None
    if ledger_path is not False:  # False: the published figures only
        measured_tp, spec = from_measured(model, spec, cat, ledger_path)
    if measured_tp is not None:
        gpu = gpu or str(spec)
        try:
            refs_src = from_references(model, spec, gpu, cat, ledger_path=False)
        except InputError:  # no published figure for this model or GPU: the measured one alone
            refs_src = Source(throughputs=[], recipe=synthetic_recipe((spec,), f"--gpu {gpu}"))
        refs_src.throughputs.insert(0, measured_tp)
        refs_src.notes.insert(0, f"Throughput used: {measured_tp.source} (measured, as `rayctl plan` uses it)"
                                 + ("; published figures are listed below it for reference." if
                                    len(refs_src.throughputs) > 1 else "."))
        return refs_src
    refs = tp_mod.for_model(model or DEFAULT_MODEL, tp_mod.load())
    if spec is None:
        spec = parse_gpu(f"{refs[0].accelerator}:{refs[0].count}", cat)
        gpu = str(spec)
    on_gpu = [r for r in refs if r.accelerator.lower() == spec.name.lower()]
    tps, notes = [], []
    if not on_gpu:
        # no published figure on this GPU: each engine's nearest one, scaled by memory bandwidth
        for engine in dict.fromkeys(r.engine for r in refs):
            fig = tp_mod.Resolver(refs[0].model, engine, rows=[r for r in refs if r.engine == engine],
                                  use_ledger=False).figure(spec.name)
            if fig is None or fig.source != "scaled":
                continue
            label = next(r.label for r in refs if r.engine == engine)
            tps.append(Throughput(model=refs[0].model, accelerator=spec.name, count=spec.count, engine=engine,
                                  label=f"{label} (scaled)", output_tokens_per_s=fig.per_gpu * spec.count,
                                  kind="scaled", source=fig.basis))
            notes.append(f"{label}: no published figure on {spec.name}; {fig.basis.split(';')[0]}, "
                         f"x {spec.count} GPU(s).")
        if not tps:
            have = sorted({f"{r.accelerator}:{r.count}" for r in refs})
            raise InputError(f"--gpu {gpu}: no reference throughput for {refs[0].model} on {spec.name}, and its "
                             f"memory bandwidth is unknown to scale one (reference figures exist for "
                             f"{', '.join(have)}). State one with --gpu-throughput {spec.name}=TOK_S or "
                             "--throughput TOK_S, or measure one with --run RUN.")
    for r in on_gpu:
        factor = spec.count / r.count
        tps.append(dataclasses.replace(r, count=spec.count, output_tokens_per_s=r.output_tokens_per_s * factor))
        if factor != 1:
            notes.append(f"{r.label}: published for {r.accelerator}:{r.count}, scaled x{factor:g} for "
                         f"{spec} assuming one replica per GPU (linear).")
    notes.append("Reference throughputs are published figures (pricing/throughputs.csv), not measurements "
                 "by rayctl; measure your workload with --run RUN or state one with --throughput.")
    return Source(throughputs=tps, recipe=synthetic_recipe((spec,), f"--gpu {gpu}"), notes=notes)
