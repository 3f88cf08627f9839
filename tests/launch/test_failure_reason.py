"""Why a job failed, in one line: follow.failure_reason reads the job's message and its log tail."""

from rayctl.runs.follow import failure_reason


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
