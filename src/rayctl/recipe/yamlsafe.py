"""Read a YAML file into plain values plus the line/column of every node.

Hostile input is refused with a `Problem`, never a traceback or a hang: files over
1 MiB, non-UTF-8 bytes, several documents, nesting deeper than 100, duplicate keys,
and alias "bombs" (documents that expand to more than 20,000 nodes). Numbers must be
finite: `.inf`, `.nan` (and floats that overflow to infinity, such as `1.0e+400`) and
integers too large for a float are refused here, with the field path, line and column,
so no later check ever sees a NaN or an infinity.
"""

from __future__ import annotations

import math

import yaml

from ..errors import Problem

MAX_BYTES = 1 << 20
MAX_NODES = 20_000
MAX_DEPTH = 100

try:  # the C loader is ~10x faster where libyaml is present
    _BaseLoader = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader

_STR_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"}
_MERGE = "tag:yaml.org,2002:merge"


class Located:
    """Values of a YAML document and where each came from (1-based line, column)."""

    def __init__(self, value, marks: dict, key_marks: dict):
        self.value = value
        self.marks = marks  # path tuple -> (line, col) of the value node
        self.key_marks = key_marks  # path tuple -> (line, col) of the key naming it

    def where(self, path: tuple, key: bool = False) -> tuple[int | None, int | None]:
        """Closest known position for `path` (walks up to a parent when needed)."""
        table = self.key_marks if key else self.marks
        p = tuple(path)
        while True:
            if p in table:
                return table[p]
            if p in self.marks:
                return self.marks[p]
            if not p:
                return (None, None)
            p = p[:-1]


class _Fail(Exception):
    def __init__(self, problem: Problem):
        self.problem = problem


def _pos(mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def decode(data: bytes) -> str:
    """UTF-8 text of `data`, or a Problem naming the line and column of the first bad byte."""
    if len(data) > MAX_BYTES:
        raise _Fail(Problem(f"file is larger than {MAX_BYTES:,} bytes; a recipe is a small YAML file"))
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise _Fail(Problem(
            f"byte 0x{data[e.start]:02x} is not valid UTF-8; save the file as UTF-8 text",
            line=line, column=col)) from None


def load(data: bytes) -> Located:
    """Parse one YAML document; raise `_Fail` carrying a Problem on bad input."""
    text = decode(data)
    if "\x00" in text:
        i = text.index("\x00")
        raise _Fail(Problem("file holds a NUL character; is it binary?", line=text.count("\n", 0, i) + 1))
    loader = _BaseLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.composer.ComposerError as e:
            if "expected a single document" in str(e):
                line, col = _pos(e.problem_mark) if e.problem_mark else (None, None)
                raise _Fail(Problem("file holds more than one YAML document ('---'); a recipe is one document",
                                    line=line, column=col)) from None
            raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = _pos(mark) if mark else (None, None)
        what = (e.problem or e.context or "invalid YAML").strip()
        ctx = f" ({e.context.strip()})" if e.context and e.problem else ""
        raise _Fail(Problem(f"invalid YAML: {what}{ctx}", line=line, column=col)) from None
    except yaml.YAMLError as e:
        raise _Fail(Problem(f"invalid YAML: {e}")) from None
    except RecursionError:
        raise _Fail(Problem(f"YAML is nested too deeply (more than {MAX_DEPTH} levels)")) from None
    finally:
        loader.dispose()
    if root is None:
        raise _Fail(Problem("recipe is empty; it needs at least 'name' and 'kind'"))
    marks: dict = {}
    key_marks: dict = {}
    budget = [MAX_NODES]
    value = _convert(loader, root, (), marks, key_marks, budget, 0)
    return Located(value, marks, key_marks)


def _convert(loader, node, path, marks, key_marks, budget, depth):
    budget[0] -= 1
    if budget[0] < 0:
        line, col = _pos(node.start_mark)
        raise _Fail(Problem(
            f"recipe expands to more than {MAX_NODES:,} YAML nodes (an alias/anchor bomb?); refusing to read it",
            line=line, column=col))
    if depth > MAX_DEPTH:
        line, col = _pos(node.start_mark)
        raise _Fail(Problem(f"YAML is nested too deeply (more than {MAX_DEPTH} levels)", line=line, column=col))
    marks.setdefault(path, _pos(node.start_mark))
    if isinstance(node, yaml.ScalarNode):
        if node.tag in _STR_TAGS or not node.tag.startswith("tag:yaml.org,2002:"):
            return node.value
        try:
            value = loader.construct_object(node, deep=False)
        except yaml.YAMLError as e:
            line, col = _pos(node.start_mark)
            raise _Fail(Problem(f"invalid YAML value {node.value!r}: {getattr(e, 'problem', e)}",
                                line=line, column=col)) from None
        _check_number(value, node, path)
        return value
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (i,), marks, key_marks, budget, depth + 1)
                for i, item in enumerate(node.value)]
    # Mapping: explicit keys win over merged (<<) ones; duplicate explicit keys are errors.
    out: dict = {}
    merged: list = []
    for knode, vnode in node.value:
        if knode.tag == _MERGE:
            merged.append(vnode)
            continue
        if not isinstance(knode, yaml.ScalarNode):
            line, col = _pos(knode.start_mark)
            raise _Fail(Problem("mapping keys must be plain scalars", field=_dotted(path), line=line, column=col))
        key = knode.value if knode.tag in _STR_TAGS else loader.construct_object(knode, deep=False)
        if key in out:
            line, col = _pos(knode.start_mark)
            raise _Fail(Problem(f"key '{key}' appears twice in this mapping",
                                field=_dotted(path + (key,)), line=line, column=col))
        key_marks[path + (key,)] = _pos(knode.start_mark)
        out[key] = _convert(loader, vnode, path + (key,), marks, key_marks, budget, depth + 1)
    for vnode in merged:
        sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                line, col = _pos(src.start_mark)
                raise _Fail(Problem("'<<' merges only mappings", field=_dotted(path), line=line, column=col))
            extra = _convert(loader, src, path, marks, key_marks, budget, depth + 1)
            for k, v in extra.items():
                out.setdefault(k, v)
    return out


_MAX_INT = 10 ** 300  # larger integers overflow a float; no recipe field means them


def _check_number(value, node, path) -> None:
    """Refuse NaN, infinities and integers too large to be a float: no field means them."""
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        what = "NaN (not a number)" if math.isnan(value) else "infinite"
        msg = f"'{node.value}' is {what}; write a finite number"
    elif isinstance(value, int) and abs(value) > _MAX_INT:
        msg = f"'{node.value[:20]}...' is too large a number ({len(str(abs(value)))} digits); write a finite number"
    else:
        return
    line, col = _pos(node.start_mark)
    raise _Fail(Problem(msg, field=_dotted(path), line=line, column=col))


def _dotted(path) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


dotted = _dotted
Fail = _Fail
