"""The ::rayctl:: line protocol (contract 2): what the emitter prints, and how it parses back."""

import io
import json
import math

import pytest

from rayctl.workloads import report


def test_progress_line_is_one_json_object_after_the_marker():
    buf = io.StringIO()
    line = report.progress(5, 10, "rows", "half way", stream=buf)
    assert buf.getvalue() == line + "\n"
    assert line.startswith("::rayctl:: ")
    assert json.loads(line[len("::rayctl:: "):]) == {
        "type": "progress", "unit": "rows", "done": 5, "total": 10, "message": "half way"}


def test_progress_total_may_be_unknown_and_unit_is_checked():
    ev = report.parse_line(report.progress(3, None, "trials", stream=io.StringIO()))
    assert ev["total"] is None and ev["unit"] == "trials"
    with pytest.raises(ValueError):
        report.progress(1, 2, "bananas", stream=io.StringIO())


def test_metrics_are_json_safe():
    import numpy as np

    line = report.metrics(rows=np.int64(3), best_metric=math.nan, best_config={"lr": np.float32(0.5)},
                          output=object.__new__(type("P", (), {"__str__": lambda s: "/x"})), stream=io.StringIO())
    ev = report.parse_line(line)
    assert ev == {"type": "metrics", "rows": 3, "best_metric": None, "best_config": {"lr": 0.5}, "output": "/x"}


def test_parse_finds_the_marker_after_rays_worker_prefix():
    line = '\x1b[36m(RayTrainWorker pid=123)\x1b[0m ::rayctl:: {"type":"progress","unit":"epochs","done":1,' \
           '"total":3,"message":""}'
    assert report.parse_line(line)["done"] == 1


@pytest.mark.parametrize("line", ["", "hello", "::rayctl:: not json", '::rayctl:: {"type": "other"}',
                                  "::rayctl:: [1, 2]"])
def test_parse_ignores_other_lines(line):
    assert report.parse_line(line) is None


def test_metrics_merge_later_keys_win():
    buf = io.StringIO()
    report.metrics(rows=1, output="a", stream=buf)
    report.progress(1, 2, stream=buf)
    report.metrics(rows=2, url="http://x", stream=buf)
    lines = ["noise"] + buf.getvalue().splitlines()
    assert report.merge_metrics(lines) == {"rows": 2, "output": "a", "url": "http://x"}
