"""The ::rayctl:: metrics/progress protocol as jobs.py parses it."""

from rayctl.runs.jobs import Report, failure_reason, parse_line


def test_progress_and_metrics_lines_parse():
    assert parse_line('::rayctl:: {"type": "progress", "unit": "rows", "done": 3, "total": 10}') == \
        {"type": "progress", "unit": "rows", "done": 3, "total": 10}
    assert parse_line('::rayctl:: {"type": "metrics", "rows": 5}') == {"type": "metrics", "rows": 5}
    # Ray prefixes lines printed by tasks and actors; the marker may follow a prefix.
    assert parse_line('(MapWorker pid=12) ::rayctl:: {"type": "metrics", "output_tokens": 9}')["output_tokens"] == 9


def test_ordinary_and_malformed_lines_are_not_events():
    for line in ("hello", "", "::rayctl::", "::rayctl:: not json", '::rayctl:: ["a list"]',
                 '::rayctl:: {"type": "other"}', '::rayctl:: {"type": "progress", "done": "x"}',
                 '::rayctl:: {"type": "progress", "done": 1, "total": "many"}',
                 '::rayctl:: {"type": "progress", "done": true}'):
        assert parse_line(line) is None, line


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


def test_non_numeric_counts_stay_out_of_the_columns():
    r = Report()
    r.feed('::rayctl:: {"type": "metrics", "rows": "many", "best_config": {"lr": 0.1}}')
    f = r.ledger_fields()
    assert "rows" not in f and f["metrics"]["best_config"] == {"lr": 0.1}
    assert Report().ledger_fields() == {}


def test_failure_reason_names_the_exception():
    msg = "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n..."
    lines = ["Traceback (most recent call last):", '  File "job.py", line 3', "ValueError: boom"]
    assert failure_reason(msg, lines) == "Job entrypoint command failed with exit code 1: ValueError: boom"
    assert failure_reason("", []) == "the job failed"


def test_a_stalled_workload_is_reported_by_its_own_words_not_the_shutdown_noise():
    """The stall watchdog's one line wins over what Ray prints while the driver exits after it."""
    lines = [
        "rayctl: engine transformers: 1 replica(s) x 1 CPU",
        "rayctl: workload error: stalled: no progress for 600 s (no row completed; free now: 0 CPU, 0 GPU); "
        "other work may hold the CPUs",
        '::rayctl:: {"type": "metrics", "error": "stalled: no progress for 600 s"}',
        "Exception in thread rayctl-batch-write:",
        "Traceback (most recent call last):",
        '  File "ray/_private/worker.py", line 2860, in get',
        "RuntimeError: Ray is not initialized.",
    ]
    reason = failure_reason("Job entrypoint command failed with exit code 1, last available logs ...", lines)
    assert reason.startswith("Job entrypoint command failed with exit code 1: stalled: no progress for 600 s")
    assert "Ray is not initialized" not in reason
    # Without rayctl's line, the last exception line still says why.
    assert failure_reason("failed", lines[3:]) == "failed: RuntimeError: Ray is not initialized."
    # Its line scrolled out of the tail: the `error` metric it reported says it.
    assert failure_reason("failed", lines[3:], "stalled: no progress for 600 s (...)") == \
        "failed: stalled: no progress for 600 s (...)"
