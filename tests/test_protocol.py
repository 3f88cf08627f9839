"""The ::rayctl:: line protocol (contract 2), both sides: what `rayctl.protocol` emits on the
cluster, how it parses back in rayctl, and that every reader (local runs, the SkyPilot log
sink, the workload tests' helper) goes through that one parser. No Ray needed."""

from __future__ import annotations

import ast
import io
import json
import math
from pathlib import Path

import pytest

from rayctl import protocol
from rayctl.protocol import Report, merge_metrics, parse_line

SRC = Path(__file__).resolve().parents[1] / "src" / "rayctl"


# ---------------------------------------------------------------------------- the emitters


def test_progress_line_is_one_json_object_after_the_marker():
    buf = io.StringIO()
    line = protocol.progress(5, 10, "rows", "half way", stream=buf)
    assert buf.getvalue() == line + "\n"
    assert line.startswith("::rayctl:: ")
    assert json.loads(line[len("::rayctl:: "):]) == {
        "type": "progress", "unit": "rows", "done": 5, "total": 10, "message": "half way"}


def test_progress_total_may_be_unknown_and_unit_is_checked():
    ev = parse_line(protocol.progress(3, None, "trials", stream=io.StringIO()))
    assert ev["total"] is None and ev["unit"] == "trials"
    with pytest.raises(ValueError):
        protocol.progress(1, 2, "bananas", stream=io.StringIO())


@pytest.mark.parametrize("unit", protocol.UNITS)
def test_every_line_the_emitter_prints_the_parser_reads_back(unit):
    buf = io.StringIO()
    protocol.progress(1, 4, unit, "m", stream=buf)
    protocol.metrics(rows=1, loss=math.inf, stream=buf)
    protocol.budget("budget deadline reached; job stopped", 1.5e9, stream=buf)
    evs = [parse_line(ln) for ln in buf.getvalue().splitlines()]
    assert evs == [{"type": "progress", "unit": unit, "done": 1, "total": 4, "message": "m"},
                   {"type": "metrics", "rows": 1, "loss": None},
                   {"type": "budget", "message": "budget deadline reached; job stopped", "deadline": 1.5e9}]


def test_metrics_are_json_safe():
    import numpy as np

    line = protocol.metrics(rows=np.int64(3), best_metric=math.nan, best_config={"lr": np.float32(0.5)},
                            output=object.__new__(type("P", (), {"__str__": lambda s: "/x"})), stream=io.StringIO())
    ev = parse_line(line)
    assert ev == {"type": "metrics", "rows": 3, "best_metric": None, "best_config": {"lr": 0.5}, "output": "/x"}
    json.loads(line.split(" ", 1)[1], parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))


# ---------------------------------------------------------------------------- the parser


def test_progress_and_metrics_lines_parse():
    assert parse_line('::rayctl:: {"type": "progress", "unit": "rows", "done": 3, "total": 10}') == \
        {"type": "progress", "unit": "rows", "done": 3, "total": 10}
    assert parse_line('::rayctl:: {"type": "metrics", "rows": 5}') == {"type": "metrics", "rows": 5}
    # Ray prefixes lines printed by tasks and actors; the marker may follow a prefix.
    assert parse_line('(MapWorker pid=12) ::rayctl:: {"type": "metrics", "output_tokens": 9}')["output_tokens"] == 9


def test_parse_finds_the_marker_after_rays_worker_prefix():
    line = '\x1b[36m(RayTrainWorker pid=123)\x1b[0m ::rayctl:: {"type":"progress","unit":"epochs","done":1,' \
           '"total":3,"message":""}'
    assert parse_line(line)["done"] == 1


@pytest.mark.parametrize("line", [
    "", "hello", "::rayctl::", "::rayctl:: not json", '::rayctl:: ["a list"]', "::rayctl:: [1, 2]",
    '::rayctl:: {"type": "other"}', '::rayctl:: {"no": "type"}',
    '::rayctl:: {"type": "progress", "done": "x"}',
    '::rayctl:: {"type": "progress", "done": 1, "total": "many"}',
    '::rayctl:: {"type": "progress", "done": true}',
    '::rayctl:: {"type": "progress", "done": null, "total": 3}',
    # what the emitter refuses, the parser refuses: an unknown unit, a message that is not text
    '::rayctl:: {"type": "progress", "unit": "bananas", "done": 1, "total": 2}',
    '::rayctl:: {"type": "progress", "unit": "rows", "done": 1, "total": 2, "message": {"a": 1}}',
])
def test_ordinary_and_malformed_lines_are_not_events(line):
    assert parse_line(line) is None, line


def test_protocol_reads_non_finite_numbers_as_null():
    ev = parse_line('::rayctl:: {"type": "metrics", "loss": NaN, "best": -Infinity, "big": 1e400, "rows": 3}')
    assert ev == {"type": "metrics", "loss": None, "best": None, "big": None, "rows": 3}
    assert parse_line('::rayctl:: {"type": "progress", "done": NaN, "total": 3}') is None


# ---------------------------------------------------------------------------- merging


def test_metrics_merge_later_keys_win():
    buf = io.StringIO()
    protocol.metrics(rows=1, output="a", stream=buf)
    protocol.progress(1, 2, stream=buf)
    protocol.metrics(rows=2, url="http://x", stream=buf)
    lines = ["noise"] + buf.getvalue().splitlines()
    assert merge_metrics(lines) == {"rows": 2, "output": "a", "url": "http://x"}


def test_metrics_merge_last_value_wins_and_fill_ledger_columns():
    r = Report()
    r.feed('::rayctl:: {"type": "metrics", "rows": 1, "model": "tiny"}')
    r.feed("plain output")
    r.feed('::rayctl:: {"type": "progress", "unit": "rows", "done": 2, "total": null, "message": "m"}')
    r.feed('::rayctl:: {"type": "metrics", "rows": 4, "input_tokens": 40, "output_tokens": 80.0, "url": "u"}')
    assert r.metrics == {"rows": 4, "model": "tiny", "input_tokens": 40, "output_tokens": 80.0, "url": "u"}
    assert r.last_progress["done"] == 2 and r.progress["rows"]["message"] == "m"
    f = r.ledger_fields()
    assert (f["rows"], f["input_tokens"], f["output_tokens"]) == (4, 40, 80)
    assert f["metrics"]["url"] == "u"
    assert not r.budget_stop


def test_last_progress_is_kept_per_unit():
    r = Report()
    r.feed(protocol.progress(1, 3, "epochs", stream=io.StringIO()))
    r.feed(protocol.progress(7, None, "steps", stream=io.StringIO()))
    r.feed(protocol.progress(2, 3, "epochs", stream=io.StringIO()))
    assert r.progress["epochs"]["done"] == 2 and r.progress["steps"]["done"] == 7
    assert r.last_progress["unit"] == "epochs"


def test_non_numeric_counts_stay_out_of_the_columns():
    r = Report()
    r.feed('::rayctl:: {"type": "metrics", "rows": "many", "best_config": {"lr": 0.1}, "input_tokens": true}')
    f = r.ledger_fields()
    assert "rows" not in f and "input_tokens" not in f and f["metrics"]["best_config"] == {"lr": 0.1}
    assert Report().ledger_fields() == {}


def test_a_budget_line_marks_the_report_stopped_by_budget():
    r = Report()
    ev = r.feed('(head, rank=0, pid=7) ::rayctl:: {"type": "budget", "message": "budget deadline reached"}')
    assert ev["type"] == "budget" and r.budget_stop and r.metrics == {} and r.last_progress is None


# ---------------------------------------------------------------------------- one parser for every reader


def test_the_skypilot_log_sink_reads_with_the_same_parser(tmp_path):
    """Before: the log sink had its own parser, which let NaN into the ledger's metrics and took
    a progress line with no number (or any `type`) as an event."""
    from rayctl.providers.skypilot.track import LogSink

    sink = LogSink(tmp_path / "log.txt", echo=False)
    sink.write('::rayctl:: {"type": "metrics", "rows": 2, "loss": NaN, "peak": Infinity}\n')
    sink.write('::rayctl:: {"type": "progress", "unit": "rows", "done": "x", "total": 3}\n')
    sink.write('::rayctl:: {"type": "progress", "unit": "rows", "done": 1, "total": 3}\n')
    sink.write('::rayctl:: {"type": "progress", "unit": "rows", "done": "many"}\n')
    assert not sink.budget_stop
    sink.write(protocol.budget("budget deadline reached; job stopped", 1.0, stream=io.StringIO()) + "\n")
    sink.close()
    fields = sink.ledger_fields()
    assert fields == {"rows": 2, "metrics": {"rows": 2, "loss": None, "peak": None}}
    json.dumps(fields, allow_nan=False)
    assert sink.progress["done"] == 1 and sink.budget_stop


def _string_constants(tree):
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings:
            yield n


def test_only_the_protocol_module_knows_the_marker():
    """One emitter, one parser: no other module spells the marker in code (docstrings may name it)."""
    assert (SRC / "protocol.py").is_file() and not (SRC / "workloads" / "report.py").exists()
    found = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "protocol.py":
            continue
        for n in _string_constants(ast.parse(path.read_text(), str(path))):
            if protocol.MARKER in n.value:
                found.append(f"{path.relative_to(SRC)}:{n.lineno}")
    assert found == []
