"""Reference serving throughputs shipped as data (`pricing/throughputs.csv`).

Each row: model, accelerator, count (GPUs the figure was published for), engine,
label, output_tokens_per_s, kind, source. `kind: published` rows are public figures
quoted as-is, not measurements by rayctl. A throughput here is generated (output)
tokens per second for the whole node at full load.
"""

from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from ..catalog import shipped_dir
from ..errors import InputError

FILE = "throughputs.csv"
_COLUMNS = ("model", "accelerator", "count", "engine", "label", "output_tokens_per_s", "kind", "source")


@dataclass(frozen=True)
class Throughput:
    model: str
    accelerator: str
    count: int
    engine: str
    label: str
    output_tokens_per_s: float
    kind: str  # published | measured | stated
    source: str

    def as_dict(self) -> dict:
        return {"model": self.model, "accelerator": self.accelerator, "count": self.count,
                "engine": self.engine, "label": self.label, "output_tokens_per_s": self.output_tokens_per_s,
                "kind": self.kind, "source": self.source}


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
        raise InputError(f"reference throughputs {f}: cannot read: {e.strerror}; pass --throughput TOK_S "
                         "or --run RUN instead") from None
    out = []
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise InputError(f"reference throughputs {f}:1: missing column(s) {', '.join(missing)}")
        for lineno, row in enumerate(reader, start=2):
            try:
                out.append(Throughput(row["model"], row["accelerator"], int(row["count"]), row["engine"],
                                      row["label"], float(row["output_tokens_per_s"]), row["kind"], row["source"]))
            except (TypeError, ValueError):
                raise InputError(f"reference throughputs {f}:{lineno}: 'count' and 'output_tokens_per_s' "
                                 "must be numbers") from None
            tps = out[-1].output_tokens_per_s
            if not (0 < tps <= MAX_TOKENS_PER_S) or out[-1].count < 1:
                raise InputError(f"reference throughputs {f}:{lineno}: 'output_tokens_per_s' must be a finite "
                                 f"number above 0 and at most {MAX_TOKENS_PER_S:,.0f}, and 'count' at least 1; "
                                 f"got {row['output_tokens_per_s']!r}, count {row['count']!r}")
    return out


def normalize(model: str) -> str:
    """Loose model key: 'meta-llama/Meta-Llama-3.1-8B-Instruct' and 'llama3.1-8b' -> 'llama-3.1-8b'."""
    m = model.strip().lower().rsplit("/", 1)[-1]
    m = re.sub(r"^meta-", "", m)
    m = re.sub(r"-(instruct|chat|hf)$", "", m)
    m = re.sub(r"^llama(\d)", r"llama-\1", m)
    return m


def for_model(model: str, rows: list[Throughput]) -> list[Throughput]:
    key = normalize(model)
    found = [r for r in rows if normalize(r.model) == key]
    if not found:
        known = sorted({r.model for r in rows})
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise InputError(f"--model {model}: no reference throughput ships for this model.{hint} "
                         f"Models with reference figures: {', '.join(known) or 'none'}. "
                         "State one with --throughput TOK_S, or measure one with --run RUN.")
    return found
