"""What changed between two `rayctl plan --json` outputs, for a pull-request comment.

Both sides are the documents `rayctl plan --json` prints: one plan object, one error
object (`{"file": ..., "error": {...}}`), or `{"plans": [...]}` holding either. Recipes
are matched by recipe name, then by file (so a renamed file or a recipe that stopped
planning still pairs up). For each recipe the diff says what moved:

- `offer`: cloud, instance type, accelerator or pricing mode of the chosen offer;
- `region`: region or zone of the chosen offer;
- `price`: cluster $/h of the chosen offer;
- `per-token`: $ per 1M output tokens of the chosen offer (when both plans have it:
  the per-token objective);
- `objective`: the ranking objective (per-token or hourly), when both plans name one;
- `estimate`: the estimated $ (or the hours it is estimated for);
- `error`: the recipe started or stopped failing to plan, or fails differently.

Each recipe's `change` is one of: changed, added, removed, failing (plans no more),
fixed (plans again), still-failing (fails the same way on both sides), unchanged.

Output is deterministic: the new plan's order, then recipes that were removed in the
old plan's order. Standard library only (this runs on the `rayctl plan` path).
"""

from __future__ import annotations

import json
import math
import os

from ..errors import InputError

FIELDS = ("offer", "region", "price", "per-token", "estimate", "objective", "error")
CHANGES = ("changed", "added", "removed", "failing", "fixed", "still-failing", "unchanged")
_EPS = 1e-9
MAX_BYTES = 64 * 2**20


def load_plans(path: str | os.PathLike) -> list[dict]:
    """The plan documents in a `rayctl plan --json` output file, or InputError naming the file and line."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:  # a pipe is fine (`--diff <(git show main:plan.json)`)
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"--diff {p}: no such file (expected the output of `rayctl plan --json`)") from None
    except IsADirectoryError:
        raise InputError(f"--diff {p}: is a directory, not a plan file") from None
    except OSError as e:
        raise InputError(f"--diff {p}: cannot read: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise InputError(f"--diff {p}: larger than {MAX_BYTES // 2**20} MiB; a plan file is a small JSON document")
    try:
        doc = json.loads(data.decode("utf-8-sig"), parse_constant=_not_json)
    except UnicodeDecodeError:
        raise InputError(f"--diff {p}: not UTF-8 text (expected the output of `rayctl plan --json`)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"--diff {p}:{e.lineno}:{e.colno}: not valid JSON: {e.msg} "
                         "(expected the output of `rayctl plan --json`)") from None
    except ValueError as e:  # NaN / Infinity: not JSON, and never written by rayctl
        raise InputError(f"--diff {p}: {e} (expected the output of `rayctl plan --json`)") from None
    plans = plans_of(doc, p)
    for d in plans:
        _check_numbers(d, p)
    return plans


def _not_json(token: str):
    raise ValueError(f"'{token}' is not a JSON number")


_NUMBERS = (("chosen", "hourly_usd"), ("chosen", "usd_per_1m_output_tokens"), ("estimate", "hours"),
            ("estimate", "usd"))


def _check_numbers(d: dict, where: str) -> None:
    """The numbers a diff compares are finite numbers (or absent/null)."""
    for outer, key in _NUMBERS:
        v = (d.get(outer) or {}).get(key) if isinstance(d.get(outer) or {}, dict) else None
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"--diff {where}: recipe '{d.get('recipe')}': '{outer}.{key}' is {v!r}, not a finite "
                             "number (expected the output of `rayctl plan --json`)")


def plans_of(doc, where: str = "<plans>") -> list[dict]:
    items = doc.get("plans") if isinstance(doc, dict) and "plans" in doc else [doc]
    if not isinstance(items, list) or not all(_is_plan_doc(d) for d in items):
        raise InputError(f"--diff {where}: not a `rayctl plan --json` output (expected a plan object with "
                         "'recipe' and 'chosen', an error object with 'file' and 'error', or {\"plans\": [...]})")
    return items


def _is_plan_doc(d) -> bool:
    return isinstance(d, dict) and (
        (isinstance(d.get("chosen"), dict) and "recipe" in d) or ("error" in d and "file" in d))


def summarize(d: dict) -> dict:
    """The parts of one plan document a diff compares."""
    if "error" in d:
        err = d.get("error") or {}
        msg = (err.get("message", "") if isinstance(err, dict) else str(err)).strip()
        msg = msg.splitlines()[0] if msg else "error"
        f = d.get("file")
        if f and msg.startswith(f"{f}:"):
            msg = msg[len(f) + 1:].lstrip(" ")  # the file is in its own column
        return {"recipe": d.get("recipe"), "file": f, "ok": False, "error": msg,
                "exit_code": err.get("exit_code") if isinstance(err, dict) else None}
    c = d["chosen"]
    est = d.get("estimate") or {}
    cat = d.get("catalog") or {}
    return {"recipe": d.get("recipe"), "file": d.get("file"), "ok": True,
            "cloud": c.get("cloud"), "region": c.get("region"), "zone": c.get("zone"),
            "instance_type": c.get("instance_type"), "accelerator": c.get("accelerator"),
            "accelerator_count": c.get("accelerator_count"), "spot": bool(c.get("spot")),
            "hourly_usd": c.get("hourly_usd"), "hours": est.get("hours"), "estimate_usd": est.get("usd"),
            "objective": d.get("objective"), "usd_per_1m_output_tokens": c.get("usd_per_1m_output_tokens"),
            "catalog": {"source": cat.get("source"), "as_of": cat.get("as_of")}}


def _match(old: list[dict], new: list[dict]) -> list[tuple]:
    used: set = set()

    def find(key: str, value):
        if value is None:
            return None
        for i, o in enumerate(old):
            if i not in used and o.get(key) == value:
                return i
        return None

    pairs = []
    for n in new:
        i = find("recipe", n.get("recipe"))
        if i is None:
            i = find("file", n.get("file"))
        if i is not None:
            used.add(i)
        pairs.append((old[i] if i is not None else None, n))
    pairs.extend((o, None) for i, o in enumerate(old) if i not in used)
    return pairs


def _differs(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) > _EPS
    return a != b


def compare(o: dict | None, n: dict | None) -> tuple[str, list[str]]:
    """(change, fields) for one recipe: added, removed, failing, fixed, still-failing, changed or unchanged."""
    if o is None:
        return "added", []
    if n is None:
        return "removed", []
    if not o["ok"] or not n["ok"]:
        if o["ok"]:
            return "failing", ["error"]
        if n["ok"]:
            return "fixed", ["error"]
        return ("changed", ["error"]) if o["error"] != n["error"] else ("still-failing", [])
    fields = []
    if any(_differs(o[k], n[k]) for k in ("cloud", "instance_type", "accelerator", "accelerator_count", "spot")):
        fields.append("offer")
    if _differs(o["region"], n["region"]) or _differs(o["zone"], n["zone"]):
        fields.append("region")
    if _differs(o["hourly_usd"], n["hourly_usd"]):
        fields.append("price")
    a, b = o.get("usd_per_1m_output_tokens"), n.get("usd_per_1m_output_tokens")
    if a is not None and b is not None and _differs(a, b):
        fields.append("per-token")
    if _differs(o["estimate_usd"], n["estimate_usd"]) or _differs(o["hours"], n["hours"]):
        fields.append("estimate")
    if o.get("objective") and n.get("objective") and o["objective"] != n["objective"]:
        fields.append("objective")
    return ("changed" if fields else "unchanged"), fields


def diff(old_docs: list[dict], new_docs: list[dict]) -> dict:
    """The diff as a JSON-ready document."""
    old = [summarize(d) for d in old_docs]
    new = [summarize(d) for d in new_docs]
    rows = []
    counts = {k: 0 for k in CHANGES}
    for o, n in _match(old, new):
        change, fields = compare(o, n)
        counts[change] += 1
        ref = n or o
        rows.append({"recipe": ref.get("recipe") or (o or {}).get("recipe"), "file": ref.get("file"),
                     "change": change, "fields": fields, "old": o, "new": n})
    totals = {side: round(sum(e["estimate_usd"] or 0 for e in items if e["ok"]), 2)
              for side, items in (("old", old), ("new", new))}
    totals["delta"] = round(totals["new"] - totals["old"], 2)
    return {"summary": counts, "total_estimate_usd": totals,
            "catalog": {"old": _catalogs(old), "new": _catalogs(new)}, "recipes": rows}


def _catalogs(items: list[dict]) -> list[dict]:
    seen: list = []
    for e in items:
        c = e.get("catalog")
        if c and c not in seen:
            seen.append(c)
    return seen


# ---------------------------------------------------------------- markdown

def _md(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _offer(e: dict | None, limit: int = 160) -> str:
    if e is None:
        return "—"
    if not e["ok"]:
        msg = e["error"]
        return "error: " + _md(msg if len(msg) <= limit else msg[:limit - 3] + "...")
    mode = "spot" if e["spot"] else "on-demand"
    return _md(f"{e['cloud']} {e['instance_type']} {e['accelerator']}:{e['accelerator_count']} {mode}")


def _region(e: dict | None) -> str:
    if e is None or not e["ok"]:
        return "—"
    return _md("/".join(x for x in (e["region"], e["zone"]) if x))


def _usd(x, digits: int) -> str:
    return "—" if x is None else f"${x:,.{digits}f}"


def _pct(a, b) -> str:
    if not a or a is None or b is None:
        return ""
    return f" ({(b - a) / a * 100:+.1f}%)"


def _pair(o: dict | None, n: dict | None, fn, changed: bool) -> str:
    if o is not None and n is not None and changed and fn is _offer:
        a, b = _offer(o, 60), _offer(n, 60)  # keep "old → new" readable when one side is an error
    else:
        a, b = fn(o), fn(n)
    if o is None:
        return b
    if n is None:
        return f"~~{a}~~"
    if not changed or a == b:
        return b
    return f"{a} → **{b}**"


def _money_cell(o, n, key: str, digits: int, changed: bool) -> str:
    ov = o[key] if o and o["ok"] else None
    nv = n[key] if n and n["ok"] else None
    if o is None:
        return _usd(nv, digits)
    if n is None:
        return f"~~{_usd(ov, digits)}~~" if ov is not None else "—"
    if not changed:
        return _usd(nv, digits)
    if ov is None or nv is None:
        return f"{_usd(ov, digits)} → **{_usd(nv, digits)}**"
    delta = nv - ov
    extra = f"{_pct(ov, nv)}" if key == "hourly_usd" else f" ({'+' if delta >= 0 else '-'}${abs(delta):,.2f})"
    return f"{_usd(ov, digits)} → **{_usd(nv, digits)}**{extra}"


def _estimate(o, n, changed: bool) -> str:
    cell = _money_cell(o, n, "estimate_usd", 2, changed)
    e = n if n and n["ok"] else (o if o and o["ok"] else None)
    if e is None or e.get("hours") is None:
        return cell
    if changed and o and n and o["ok"] and n["ok"] and _differs(o["hours"], n["hours"]):
        return f"{cell} for {o['hours']:g} h → {n['hours']:g} h"
    return f"{cell} for {e['hours']:g} h"


_LABEL = {"changed": "changed", "added": "added", "removed": "removed", "failing": "now failing",
          "fixed": "now plans", "still-failing": "still failing", "unchanged": "—"}


def _row(r: dict, per_token: bool = False) -> str:
    o, n, f = r["old"], r["new"], set(r["fields"])
    change = _LABEL[r["change"]]
    if r["change"] == "added" and not n["ok"]:
        change = "added, fails"
    elif r["change"] == "changed":
        change = ", ".join(x for x in FIELDS if x in f)
    cells = [_md(r["recipe"] or r["file"] or "?"), change,
             _pair(o, n, _offer, bool(f & {"offer", "error"}) or r["change"] in ("failing", "fixed")),
             _pair(o, n, _region, bool(f & {"region", "error"})),
             _money_cell(o, n, "hourly_usd", 4, bool(f & {"price", "error"}))]
    if per_token:
        cells.append(_per_token_cell(o, n, "per-token" in f))
    cells.append(_estimate(o, n, bool(f & {"estimate", "error"})))
    return "| " + " | ".join(cells) + " |"


def _per_token_cell(o, n, changed: bool) -> str:
    ov = o.get("usd_per_1m_output_tokens") if o and o["ok"] else None
    nv = n.get("usd_per_1m_output_tokens") if n and n["ok"] else None
    if n is None:
        return f"~~{_usd(ov, 4)}~~" if ov is not None else "—"
    if not changed or ov is None or nv is None:
        return _usd(nv, 4)
    return f"{_usd(ov, 4)} → **{_usd(nv, 4)}**{_pct(ov, nv)}"


_HEAD = "| recipe | change | offer | region | $/h | estimate |\n|---|---|---|---|---|---|\n"
_HEAD_PT = ("| recipe | change | offer | region | $/h | $/1M out tok | estimate |\n"
            "|---|---|---|---|---|---|---|\n")


def markdown(d: dict, title: str = "rayctl plan") -> str:
    """A markdown section for a pull-request comment: what moved in a table, the rest folded away."""
    s = d["summary"]
    parts = [f"{s[k]} {_LABEL[k] if k != 'unchanged' else k}" for k in CHANGES if s[k]]
    t = d["total_estimate_usd"]
    lines = [f"### {title}", ""]
    total = sum(s.values())
    lines.append(f"**{total} recipe{'s' if total != 1 else ''}**: " + (", ".join(parts) or "none")
                 + f" · total estimate {_usd(t['old'], 2)} → {_usd(t['new'], 2)}"
                 + (f" ({'+' if t['delta'] >= 0 else '-'}${abs(t['delta']):,.2f})" if t["delta"] else " (no change)"))
    lines.append("")
    cat_old, cat_new = d["catalog"]["old"], d["catalog"]["new"]
    if cat_old != cat_new and cat_old and cat_new:
        lines.append("Price catalog: " + "; ".join(_cat(c) for c in cat_old) + " → "
                     + "; ".join(_cat(c) for c in cat_new))
        lines.append("")
    moved = [r for r in d["recipes"] if r["change"] != "unchanged"]
    same = [r for r in d["recipes"] if r["change"] == "unchanged"]
    # the $/1M output tokens column only when some plan has it (per-token objective)
    pt = any(e and e.get("ok") and e.get("usd_per_1m_output_tokens") is not None
             for r in d["recipes"] for e in (r["old"], r["new"]))
    head = _HEAD_PT if pt else _HEAD
    if moved:
        lines.append(head + "\n".join(_row(r, pt) for r in moved))
    else:
        lines.append("No plan changed.")
    if same:
        lines += ["", f"<details><summary>{len(same)} unchanged</summary>", "", head + "\n".join(_row(r, pt) for r in same),
                  "", "</details>"]
    return "\n".join(lines) + "\n"


def _cat(c: dict) -> str:
    return f"`{_md(c.get('source'))}` (as of {c.get('as_of') or 'unknown'})"
