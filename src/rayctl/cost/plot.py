"""Bar chart of $ per 1M tokens, self-hosted vs managed APIs: PNG or self-contained HTML.

The format follows the file's extension: `.png` (matplotlib, Agg backend, imported
here only) or `.html`/`.htm` (one file, inline SVG and CSS, no scripts and no network
assets, so it opens offline and can be attached to a CI run).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from ..errors import InputError

FORMATS = {".png": "png", ".html": "html", ".htm": "html"}
COLORS = {"spot": "#2e8b57", "on-demand": "#1f6fb2", "actual": "#7f7f7f", "api": "#d9822b"}


def check_target(path: str) -> tuple[Path, str]:
    """(path, format) for --plot, or InputError for a bad extension or folder."""
    p = Path(path).expanduser()
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"--plot {path}: unknown chart format '{p.suffix or '(no extension)'}'; "
                         "end the file name in .png (image) or .html (self-contained page)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--plot {path}: folder {parent} does not exist")
    if p.is_dir():
        raise InputError(f"--plot {path}: is a folder; give a file name ending in .png or .html")
    if not os.access(parent, os.W_OK):
        raise InputError(f"--plot {path}: folder {parent} is not writable")
    return p, fmt


def bars(doc: dict) -> list[tuple[str, float, str]]:
    """(label, $ per 1M tokens, category) for every self-hosted row and API, cheapest first."""
    out = []
    for r in doc["self_hosted"]:
        if r.get("usd_per_1m_tokens") is None:
            continue
        where = r["offer"]["cloud"] + " " + doc["gpu"] if r.get("offer") else "billed"
        cat = "actual" if r["kind"] == "actual" else r["mode"]
        out.append((f"{r['throughput']} · {r['mode'] if cat != 'actual' else 'actual cost'} ({where})",
                    r["usd_per_1m_tokens"], cat))
    for a in doc["apis"]:
        out.append((f"{a['name']} ({a['provider_id']} API)", a["usd_per_1m_tokens"], "api"))
    return sorted(out, key=lambda b: b[1])


def _title(doc: dict) -> tuple[str, str]:
    req = doc["request"]
    title = f"$ per 1M tokens: self-hosted {doc['model'] or 'model'} vs managed APIs"
    sub = (f"request {req['input_tokens']:,} in + {req['output_tokens']:,} out tokens; utilisation "
           f"{doc['utilization']:.0%}; GPU prices {doc['catalog']['source']} (as of {doc['catalog']['as_of']}); "
           f"API prices genai-prices {doc['genai_prices']['version']}")
    return title, sub


def write(doc: dict, path: str) -> Path:
    p, fmt = check_target(path)
    try:
        if fmt == "png":
            _png(doc, p)
        else:
            p.write_text(_html(doc), encoding="utf-8")
    except OSError as e:
        raise InputError(f"--plot {path}: cannot write: {e.strerror}") from None
    return p


def _png(doc: dict, p: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    data = bars(doc)
    title, sub = _title(doc)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * len(data)), dpi=100)
    try:
        y = list(range(len(data)))
        vals = [v for _, v, _ in data]
        ax.barh(y, vals, color=[COLORS[c] for _, _, c in data])
        ax.set_yticks(y, [lbl for lbl, _, _ in data], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("$ per 1M tokens (input + output)")
        import textwrap

        ax.set_title(title + "\n" + "\n".join(textwrap.wrap(sub, 95)), fontsize=8.5)
        top = max(vals) if vals else 1.0
        for yi, v in zip(y, vals):
            ax.text(v + top * 0.01, yi, f"${v:,.4f}", va="center", fontsize=7)
        ax.set_xlim(0, top * 1.18 if top > 0 else 1)
        used = [c for c in ("spot", "on-demand", "actual", "api") if any(d[2] == c for d in data)]
        names = {"spot": "self-hosted, spot", "on-demand": "self-hosted, on-demand", "actual": "run's billed cost",
                 "api": "managed API"}
        ax.legend(handles=[Patch(color=COLORS[c], label=names[c]) for c in used], fontsize=7, loc="upper right")
        fig.tight_layout()
        fig.savefig(p, format="png")
    finally:
        plt.close(fig)


def _html(doc: dict) -> str:
    data = bars(doc)
    title, sub = _title(doc)
    top = max((v for _, v, _ in data), default=1.0) or 1.0
    label_w, bar_w, row_h = 380, 460, 26
    height = 20 + row_h * len(data)
    rows = []
    for i, (lbl, v, c) in enumerate(data):
        y = 10 + i * row_h
        w = max(1.0, v / top * bar_w)
        rows.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{html.escape(lbl)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{COLORS[c]}">'
            f"<title>{html.escape(lbl)}: ${v:,.6f} per 1M tokens</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 17}">${v:,.4f}</text>')
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in doc.get("notes", ()))
    legend = "".join(f'<span class="k"><i style="background:{COLORS[c]}"></i>{html.escape(n)}</span>'
                     for c, n in (("spot", "self-hosted, spot"), ("on-demand", "self-hosted, on-demand"),
                                  ("actual", "run's billed cost"), ("api", "managed API"))
                     if any(d[2] == c for d in data))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222}}
h1{{font-size:18px;margin:0 0 4px}} p.sub{{font-size:12px;color:#555;margin:0 0 12px}}
svg text{{font-size:12px;fill:#222}} .k{{margin-right:16px;font-size:12px}}
.k i{{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}}
ul{{font-size:12px;color:#444}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(sub)}</p>
<div>{legend}</div>
<svg width="{label_w + bar_w + 110}" height="{height}" role="img"
 aria-label="{html.escape(title)}">{"".join(rows)}</svg>
<ul>{notes}</ul>
</body></html>
"""
