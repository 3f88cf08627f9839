"""Output tokens/s per GPU for model M with engine E on accelerator A, and where it came from.

One module answers this for the planner (`plan --objective per-token`) and for
`cost compare`. Sources, first match wins:

0. **stated** -- `--gpu-throughput ACC=TOK_S` (output tokens/s per GPU): what-if
   figures and deterministic CI plans; wins over everything below.
1. **measured** -- the median, over the ledger's succeeded runs of the same model and
   engine on that accelerator, of output_tokens / duration / GPUs (duration: the
   workload's `metrics.duration_s`, else `metrics.elapsed_s`, else the run's wall
   clock). A run that recorded no engine matches on the model alone. Only runs whose
   ledger row names an accelerator count: a local run on a
   CPU-only machine records none, so it never counts for a GPU. `runs` says how many.
2. **published** -- `pricing/throughputs.csv`: public figures, each row with its
   source (repository and file, or page), engine and version, precision, input/output
   lengths and the date it was read. Several rows for one accelerator: their median.
3. **scaled** -- for an accelerator with no figure: the published figure of the
   accelerator with the nearest memory bandwidth, scaled by the ratio of bandwidths
   (decode is memory-bandwidth-bound). Bandwidths: `BANDWIDTH_GBPS`, from the
   vendors' spec sheets.

Models are matched loosely (`normalize`); a model with no row of its own (the demo
model, an unknown checkpoint) uses the rows of the closest size class (parameters in
billions parsed from the name, else the smallest class), and the figure says so
(`model` is the model whose figure was used, `note` explains). An engine with no
published row of its own uses the other engines' rows for the model, also noted.

A node's tokens/s = per-GPU figure x GPUs per node; a cluster's = that x nodes.
Nothing heavy is imported here: the planner must stay light.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..settings import shipped_dir
from ..errors import InputError

FILE = "throughputs.csv"
_COLUMNS = ("model", "accelerator", "count", "engine", "engine_version", "label", "output_tokens_per_s",
            "precision", "input_len", "output_len", "date_read", "kind", "source")
SOURCES = ("stated", "measured", "published", "scaled")

# Memory bandwidth per GPU in GB/s, from the vendors' data sheets (SXM parts where a
# cloud's instance uses them; SkyPilot's catalog names). Decode speed follows it.
BANDWIDTH_GBPS = {
    "a10": 600, "a10g": 600, "a40": 696, "a6000": 768,
    "a100": 1555, "a100-80gb": 2039, "a100-80gb-sxm": 2039, "a100-80g": 2039,
    "b200": 8000, "gh200": 4000,
    "h100": 3350, "h100-sxm": 3350, "h100-mega": 3350, "h100-nvl": 3900,
    "h200": 4800, "h200-sxm": 4800,
    "l4": 300, "l40": 864, "l40s": 864,
    "p4": 192, "p40": 346, "p100": 732,
    "rtx4090": 1008, "rtx6000": 672, "rtxpro6000": 1792,
    "t4": 320, "t4g": 320,
    "v100": 900, "v100-32gb": 900, "v100-32g": 900,
}


@dataclass(frozen=True)
class Throughput:
    """One published row (or a measured/stated figure in `cost compare`); whole node."""

    model: str
    accelerator: str
    count: int | None
    engine: str
    label: str
    output_tokens_per_s: float
    kind: str  # published | measured | stated | scaled
    source: str
    engine_version: str = ""
    precision: str = ""
    input_len: str = ""
    output_len: str = ""
    date_read: str = ""

    @property
    def per_gpu(self) -> float:
        return self.output_tokens_per_s / (self.count or 1)

    def as_dict(self) -> dict:
        d = {"model": self.model, "accelerator": self.accelerator, "count": self.count,
             "engine": self.engine, "label": self.label, "output_tokens_per_s": self.output_tokens_per_s,
             "kind": self.kind, "source": self.source}
        for k in ("engine_version", "precision", "input_len", "output_len", "date_read"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        return d


@dataclass(frozen=True)
class Figure:
    """Output tokens/s per GPU on one accelerator, with where it came from."""

    accelerator: str
    per_gpu: float
    source: str  # stated | measured | published | scaled
    runs: int | None = None  # measured: how many runs the median is over
    model: str | None = None  # the model whose figure this is
    engine: str | None = None
    basis: str = ""  # one line: rows, runs or flag behind the figure
    note: str | None = None  # size-class or engine substitution

    def tokens_per_s(self, gpus_per_node: int, nodes: int = 1) -> float:
        return self.per_gpu * gpus_per_node * nodes


# Output tokens/s of one node: above this a figure is a typo (the fastest 8-GPU nodes
# serve small models at ~1e5 tok/s). `--throughput` is held to the same bound.
MAX_TOKENS_PER_S = 10_000_000.0


def path() -> Path:
    return shipped_dir() / FILE


def load(file: Path | None = None) -> list[Throughput]:
    f = file or path()
    try:
        fh = open(f, newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"reference throughputs {f}: cannot read: {e.strerror}; pass --throughput TOK_S, "
                         "--gpu-throughput ACC=TOK_S or --run RUN instead") from None
    out = []
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise InputError(f"reference throughputs {f}:1: missing column(s) {', '.join(missing)}")
        for lineno, row in enumerate(reader, start=2):
            try:
                tps = float(row["output_tokens_per_s"])
                count = int(row["count"])
            except (TypeError, ValueError):
                raise InputError(f"reference throughputs {f}:{lineno}: 'count' and 'output_tokens_per_s' "
                                 "must be numbers") from None
            if not (0 < tps <= MAX_TOKENS_PER_S) or count < 1:
                raise InputError(f"reference throughputs {f}:{lineno}: 'output_tokens_per_s' must be a finite "
                                 f"number above 0 and at most {MAX_TOKENS_PER_S:,.0f}, and 'count' at least 1; "
                                 f"got {row['output_tokens_per_s']!r}, count {row['count']!r}")
            out.append(Throughput(row["model"], row["accelerator"], count, row["engine"], row["label"], tps,
                                  row["kind"], row["source"], row["engine_version"], row["precision"],
                                  row["input_len"], row["output_len"], row["date_read"]))
    return out


def normalize(model: str) -> str:
    """Loose model key: 'meta-llama/Meta-Llama-3.1-8B-Instruct' and 'llama3.1-8b' -> 'llama-3.1-8b'."""
    m = model.strip().lower().rstrip("/").rsplit("/", 1)[-1]
    m = re.sub(r"^meta-", "", m)
    m = re.sub(r"-(instruct|chat|hf)$", "", m)
    m = re.sub(r"-fp8$", "", m)
    m = re.sub(r"^llama(\d)", r"llama-\1", m)
    return m


def size_b(model: str) -> float | None:
    """Parameters in billions from a model name ('llama-3.1-70b' -> 70), or None."""
    found = re.findall(r"(?:^|[-_.])(\d+(?:\.\d+)?)b(?:$|[-_.])", normalize(model))
    return float(found[-1]) if found else None


def for_model(model: str, rows: list[Throughput]) -> list[Throughput]:
    """The published rows of exactly this model (`cost compare --model`); InputError when none."""
    key = normalize(model)
    found = [r for r in rows if normalize(r.model) == key]
    if not found:
        import difflib

        known = sorted({r.model for r in rows})
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise InputError(f"--model {model}: no reference throughput ships for this model.{hint} "
                         f"Models with reference figures: {', '.join(known) or 'none'}. "
                         "State one with --throughput TOK_S or --gpu-throughput ACC=TOK_S, or measure one "
                         "with --run RUN.")
    return found


def model_rows(model: str | None, rows: list[Throughput]) -> tuple[list[Throughput], str | None]:
    """(rows for `model`, note) -- its own rows, else those of the closest size class."""
    if model:
        key = normalize(model)
        own = [r for r in rows if normalize(r.model) == key]
        if own:
            return own, None
    sizes = sorted({s for s in (size_b(r.model) for r in rows) if s is not None})
    if not sizes:
        return [], None
    want = size_b(model) if model else None
    if want is None:
        cls = sizes[0]
        why = "its size is unknown: the smallest class"
    else:
        cls = min(sizes, key=lambda s: (abs(math.log(s / want)) if want > 0 else s, s))
        why = f"{want:g}B parameters: the closest class"
    picked = [r for r in rows if size_b(r.model) == cls]
    names = ", ".join(sorted({r.model for r in picked}))
    return picked, (f"no published figure for model '{model or 'unnamed'}' ({why}); "
                    f"figures of the {cls:g}B size class used ({names})")


def engine_key(engine: str | None) -> str | None:
    """The engine a recipe's workload runs: 'auto' runs vLLM on GPU clusters."""
    if not engine or engine == "auto":
        return "vllm"
    return engine.lower()


def parse_stated(items: list[str] | None, flag: str = "--gpu-throughput") -> dict[str, float]:
    """['H100=6000', 'A100-80GB=2000'] -> {'h100': 6000.0, 'a100-80gb': 2000.0}."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        name = name.strip()
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if not sep or not name or ":" in name or not math.isfinite(v) or v <= 0:
            raise InputError(f"{flag} {item}: write ACCELERATOR=TOK_S, output tokens/s per GPU, e.g. "
                             f"{flag} H100=6000 (repeat the flag for more accelerators)")
        out[name.lower()] = v
    return out


def _median(xs: list[float]) -> float:
    """The median (no `statistics` import: this runs on the `rayctl plan` path)."""
    s = sorted(xs)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


class Resolver:
    """Figures for one (model, engine), per accelerator, cached. The ledger is read at most once,
    read-only, and only when a figure is asked for (the hourly objective never asks)."""

    def __init__(self, model: str | None, engine: str | None = None, *, stated: dict[str, float] | None = None,
                 ledger_path: str | Path | None = None, rows: list[Throughput] | None = None,
                 use_ledger: bool = True):
        self.model = model
        self.engine = engine_key(engine)
        self.stated = {k.lower(): v for k, v in (stated or {}).items()}
        self._ledger_path = ledger_path
        self._use_ledger = use_ledger
        self._rows = rows
        self._measured: dict | None = None
        self._published: tuple | None = None
        self._cache: dict[str, Figure | None] = {}

    # ------------------------------------------------------------ sources
    def _measured_runs(self) -> dict:
        if self._measured is None:
            self._measured = measured_per_gpu(self.model, self.engine, self._ledger_path) if self._use_ledger else {}
        return self._measured

    def _published_table(self) -> tuple[dict, str | None, str | None]:
        """({accelerator lower: (per-GPU median, [rows])}, model note, engine note)."""
        if self._published is None:
            rows = self._rows if self._rows is not None else load()
            mine, mnote = model_rows(self.model, rows)
            same = [r for r in mine if r.engine.lower() == self.engine]
            enote = None
            if not same and mine:
                same = mine
                engines = ", ".join(sorted({r.label for r in mine}))
                enote = f"no published figure for engine {self.engine}; figures of {engines} used"
            table: dict[str, list] = {}
            for r in same:
                table.setdefault(r.accelerator.lower(), []).append(r)
            self._published = ({a: (_median([r.per_gpu for r in rs]), rs) for a, rs in table.items()}, mnote, enote)
        return self._published

    # ------------------------------------------------------------ the answer
    def figure(self, accelerator: str) -> Figure | None:
        key = accelerator.lower()
        if key not in self._cache:
            self._cache[key] = self._figure(accelerator, key)
        return self._cache[key]

    def _figure(self, accelerator: str, key: str) -> Figure | None:
        if key in self.stated:
            return Figure(accelerator, self.stated[key], "stated", basis="--gpu-throughput")
        runs = self._measured_runs().get(key)
        if runs:
            return Figure(accelerator, _median(runs), "measured", runs=len(runs), model=self.model,
                          engine=self.engine, basis=f"median of {len(runs)} run(s) in the ledger")
        table, mnote, enote = self._published_table()
        note = "; ".join(n for n in (mnote, enote) if n) or None
        if key in table:
            per_gpu, rs = table[key]
            return Figure(accelerator, per_gpu, "published", model=rs[0].model, engine=rs[0].engine,
                          basis="; ".join(_cite(r) for r in rs), note=note)
        bw = BANDWIDTH_GBPS.get(key)
        known = [(a, BANDWIDTH_GBPS[a]) for a in table if a in BANDWIDTH_GBPS]
        if bw is None or not known:
            return None
        src, src_bw = min(known, key=lambda ab: (abs(math.log(ab[1] / bw)), ab[0]))
        per_gpu, rs = table[src]
        return Figure(accelerator, per_gpu * bw / src_bw, "scaled", model=rs[0].model, engine=rs[0].engine,
                      basis=(f"{rs[0].accelerator} figure {per_gpu:,.1f} tok/s/GPU x memory bandwidth "
                             f"{bw:g}/{src_bw:g} GB/s; " + "; ".join(_cite(r) for r in rs)),
                      note=note)


def _cite(r: Throughput) -> str:
    return (f"{r.label} {r.engine_version} {r.precision} {r.accelerator}:{r.count} "
            f"{r.output_tokens_per_s:g} tok/s ({r.source.split(':', 1)[0]}, read {r.date_read})")


def measured_per_gpu(model: str | None, engine: str | None, ledger_path: str | Path | None = None) -> dict:
    """{accelerator lower: [output tok/s per GPU of each succeeded run]} for runs of this model
    and engine (engine None: any). One read-only query; no ledger file, no figures."""
    from ..ledger import Ledger, LedgerError

    out: dict[str, list] = {}
    key = normalize(model) if model else None
    try:  # a ledger that cannot be read gives no figures (`plan` names it when it reads the preemption history)
        led = Ledger.open_readonly(ledger_path)
        if led is None:
            return out
        with led:
            runs = led.runs(status=["succeeded"])
    except LedgerError:
        return out
    for r in runs:
        tok = r["output_tokens"]
        if not r["accelerator"] or not isinstance(tok, (int, float)) or not tok > 0:
            continue
        acc, count, nodes, out_tok, dur, m = (r["accelerator"], r["accelerator_count"], r["nodes"],
                                               r["output_tokens"], r["duration_s"], r["metrics"])
        if not isinstance(m, dict):
            m = {}
        run_model = m.get("model")
        if key is not None and (not isinstance(run_model, str) or normalize(run_model) != key):
            continue
        # a run that recorded its engine must match; one that did not (serve) matches on the model
        if engine is not None and m.get("engine") and str(m["engine"]).lower() != engine:
            continue
        d = None
        for k in ("duration_s", "elapsed_s"):
            v = m.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                d = float(v)
                break
        d = d or (float(dur) if dur and dur > 0 else None)
        gpus = (count or 1) * (nodes or 1)
        if not d or gpus <= 0:
            continue
        out.setdefault(acc.lower(), []).append(out_tok / d / gpus)
    return out
