"""The import order of docs/architecture.md, enforced: no module imports against it.

Every `import` in src/rayctl (at module level and inside functions) is checked against
the table below, which is the table in docs/architecture.md (the test also checks the
doc lists the same layers).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rayctl"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# unit -> the units it may import (besides itself). Lowest first.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": {"errors"},
    "redact": set(),
    "protocol": {"errors"},
    "ledger": {"errors", "settings", "redact"},
    "recipe": {"errors", "settings", "redact"},
    "workloads": {"errors", "settings", "redact", "protocol", "recipe"},
    "planning": {"errors", "settings", "redact", "ledger", "recipe"},
    "providers": {"errors", "settings", "redact", "protocol", "ledger", "recipe", "workloads", "planning"},
    "runs": {"errors", "settings", "redact", "protocol", "ledger", "recipe", "workloads", "planning", "providers"},
    "cost": {"errors", "settings", "redact", "ledger", "recipe", "planning"},
    "schedule": {"errors", "settings", "redact", "ledger", "recipe", "runs"},
    "cli": {"errors", "settings", "redact", "protocol", "ledger", "recipe", "workloads", "planning", "providers",
            "runs", "cost", "schedule"},
    "__main__": {"cli"},
    "__init__": set(),  # the version; any unit may read it
}


def unit_of(parts: list[str]) -> str:
    """`rayctl.planning.catalog` -> planning; `rayctl.errors` -> errors."""
    return parts[1] if len(parts) > 1 and parts[1] != "__version__" else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    pkg = parts if parts[-1] == "__init__" else parts[:-1]
    if parts[-1] == "__init__":
        pkg = parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                mod = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "rayctl":
                mod = node.module.split(".")
            else:
                continue
            for a in node.names:  # a submodule or a name in the module: resolved by the caller
                out.append((node.lineno, ".".join(mod + [a.name])))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "rayctl" and a.name != "rayctl":
                    out.append((node.lineno, a.name))
    return out


def test_every_unit_is_known():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert units <= set(ALLOWED), f"add {sorted(units - set(ALLOWED))} to ALLOWED and docs/architecture.md"


def test_no_module_imports_against_the_order():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        src_unit = unit_of(list(path.relative_to(SRC.parent).with_suffix("").parts))
        for line, target in imports(path):
            t_unit = unit_of(target.split("."))
            if t_unit not in (src_unit, "__init__") and t_unit not in ALLOWED[src_unit]:
                bad.append(f"{path.relative_to(SRC.parent.parent)}:{line}: {src_unit} imports {target}")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_doc_lists_the_same_order():
    text = DOC.read_text()
    for unit in ALLOWED:
        if unit.startswith("__"):
            continue
        assert re.search(rf"`{unit}(/|\.py)`", text), f"docs/architecture.md does not mention `{unit}`"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles():
    """No two modules import each other, directly or through others (imports inside functions count:
    a cycle there is a design knot even when Python tolerates it). A package's __init__ importing its
    own submodules (re-exports) is not a cycle of design, so edges into a package's own __init__
    from inside that package are left out."""
    modules = {_module_of(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for _, target in imports(path):
            while target not in modules and "." in target:  # `from pkg import name`: the module it names
                target = target.rsplit(".", 1)[0]
            if target == mod or target not in modules:
                continue
            if mod.startswith(target + "."):  # a submodule importing its own package
                continue
            graph[mod].add(target)
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
