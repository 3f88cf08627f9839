"""Nightly batch inference as user code: read rows, score them in batches, write the results.

This is the Ray job of `examples/nightly-batch/recipe.yaml`. Inside a Ray job (RAY_ADDRESS
is set) it runs on the cluster with Ray Data; anywhere else it scores in-process, so
`python batch_infer.py --rows 100` is a quick local check.

The "model" is a tiny deterministic scorer, so the example needs no download and no GPU:
replace `score_batch` with your model's batch call. Progress and results go to stdout in
rayctl's protocol (`::rayctl:: {json}` lines), which rayctl records in its ledger.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

POSITIVE = {"good", "great", "fast", "cheap", "stable", "happy"}
NEGATIVE = {"bad", "slow", "expensive", "flaky", "broken", "sad"}
WORDS = sorted(POSITIVE | NEGATIVE | {"the", "run", "was", "very", "and", "cluster", "job"})


def report(kind: str, **fields) -> None:
    print("::rayctl:: " + json.dumps({"type": kind, **fields}, sort_keys=True), flush=True)


def make_text(i: int) -> str:
    # Deterministic input: row i always has the same text.
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 5))


def score_batch(batch: dict) -> dict:
    """The model: one sentiment score in [-1, 1] per text, plus token counts."""
    scores, tokens = [], []
    for text in batch["text"]:
        words = str(text).split()
        pos = sum(w in POSITIVE for w in words)
        neg = sum(w in NEGATIVE for w in words)
        scores.append(round((pos - neg) / max(1, pos + neg), 4))
        tokens.append(len(words))
    return {"id": list(batch["id"]), "text": list(batch["text"]), "score": scores, "tokens": tokens}


def batches_local(rows: int, size: int):
    for start in range(0, rows, size):
        ids = list(range(start, min(rows, start + size)))
        yield score_batch({"id": ids, "text": [make_text(i) for i in ids]})


def batches_ray(rows: int, size: int):
    import ray

    ray.init()  # inside a Ray job this joins the job's cluster
    ds = ray.data.range(rows).map(lambda r: {"id": r["id"], "text": make_text(int(r["id"]))})
    for batch in ds.map_batches(score_batch, batch_size=size).iter_batches(batch_size=size, batch_format="numpy"):
        yield {k: [v.item() if hasattr(v, "item") else v for v in batch[k]] for k in batch}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--output", default=None,
                    help="JSONL file to write (default: $RAYCTL_OUTPUT_DIR or ~/.rayctl/outputs, one file per day)")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.batch_size < 1:
        ap.error("--rows and --batch-size must be >= 1")
    out = Path(args.output) if args.output else Path(
        os.environ.get("RAYCTL_OUTPUT_DIR") or Path.home() / ".rayctl" / "outputs"
    ) / f"nightly-batch-infer-{dt.date.today().isoformat()}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    batches = batches_ray if os.environ.get("RAY_ADDRESS") else batches_local
    done = tokens = 0
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for batch in batches(args.rows, args.batch_size):
            for i, text, score, n in zip(batch["id"], batch["text"], batch["score"], batch["tokens"]):
                f.write(json.dumps({"id": int(i), "text": str(text), "score": float(score)}) + "\n")
                tokens += int(n)
            done += len(batch["id"])
            report("progress", unit="rows", done=done, total=args.rows, message=f"scored {done}/{args.rows}")
    os.replace(tmp, out)  # a crashed run leaves no half-written result under the final name
    report("metrics", rows=done, input_tokens=tokens, output_tokens=done, output=str(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
