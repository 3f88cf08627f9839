"""Cost accounting and cost-per-token comparisons.

- `accounting`: what each recorded run cost, from the ledger's billed segments.
- `throughputs`: reference throughputs shipped as data (`pricing/throughputs.csv`).
- `baselines`: managed-API prices from the `genai-prices` library's own snapshot.
- `compare`: self-hosted $ per 1M tokens on the planner's cheapest spot and
  on-demand offers next to the managed APIs, with the break-even monthly volume.
- `plot`: the bar chart of $ per 1M tokens (PNG or self-contained HTML).

Nothing heavy is imported here: `genai_prices` and `matplotlib` load inside the
functions that need them, so `rayctl --help` stays fast.
"""


def clean(x):
    """Floats to 10 significant digits (no 868.6999999999999 in JSON); containers recursively."""
    if isinstance(x, float):
        return float(f"{x:.10g}")
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return x
