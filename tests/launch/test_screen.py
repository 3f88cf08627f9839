"""The launch screen: rayctl's own stages and progress (plain timestamped lines off a terminal,
one live bar on one), Ray's and the libraries' output in the run's log only (`--verbose`
streams it), one throughput figure, the local-cluster line; `rayctl logs` with and without
`--raw`. The end-to-end test launches the batch-infer demo twice on the session's cluster:
once plain (a pipe), once under a pseudo-terminal with --verbose."""

from __future__ import annotations

import io
import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_no_traceback, run_cli
from launch_helpers import ledger_rows

from rayctl import protocol
from rayctl.runs.reporter import Rate, Reporter, format_progress, is_ray_noise, screen_text

# Lines a batch-infer job's log really holds (captured from a launch of recipes/batch-infer.yaml).
RAY_LINES = [
    "2026-12-02 12:13:58,770\tINFO job_manager.py:581 -- Runtime env is setting up.",
    "Running entrypoint for job demo-1: /usr/bin/python -m rayctl.workloads.batch_infer",
    "2026-12-02 12:14:10,302\tINFO streaming_executor.py:215 -- Starting execution of Dataset dataset_0357hC. "
    "Full logs are in /tmp/rayctl-d70e6d2fb8/session_2026-12-02_12-13-41_428430_4819/logs/ray-data",
    "[2026-12-02 12:14:10,412 E 5624 5718] core_worker.cc:2465: Actor with class name: 'MapWorker' has "
    "constructor arguments in the object store and max_restarts > 0.",
    "2026-12-02 12:14:10,413\tWARNING __init__.py:28 -- Progress bars disabled. To enable, set ...",
    "(MapWorker(MapBatches(Generator)) pid=5778) ",
    "Writing model shards: 100%|██████████| 1/1 [00:00<00:00, 56.05it/s]",
    "\x1b[36m(MapWorker(MapBatches(Generator)) pid=5778)\x1b[0m Writing model shards:   0%|          | 0/1 "
    "[00:00<?, ?it/s]",
    "(RayTrainWorker pid=9, ip=10.0.0.2) ::rayctl:: {} [repeated 3x across cluster]",
    "/x/site-packages/torch/nn/modules.py:12: UserWarning: something deprecated",
]


def test_ray_and_library_lines_stay_off_the_screen():
    for line in RAY_LINES:
        assert is_ray_noise(line), line
        assert screen_text(line, user_code=True) is None and screen_text(line, user_code=False) is None, line
    # A built-in workload's own messages show (also from a worker); nothing else it prints does.
    assert screen_text("rayctl: engine auto -> transformers", user_code=False) == "rayctl: engine auto -> transformers"
    assert screen_text("(RayTrainWorker pid=12, ip=10.0.0.2) rayctl: resuming", False) == "rayctl: resuming"
    assert screen_text("Setting `pad_token_id` to `eos_token_id`", user_code=False) is None
    # A user's job: its own output shows, with Ray's worker prefix.
    assert screen_text("hello from the job", user_code=True) == "hello from the job"
    assert screen_text("(f pid=3) step 3 loss 0.5", user_code=True) == "(f pid=3) step 3 loss 0.5"


def test_plain_reporter_prints_every_progress_event(capsys):
    rep = Reporter()
    events = [{"type": "progress", "unit": "rows", "done": d, "total": 40, "message": "generating",
               "output_tokens": 8 * d} for d in (0, 8, 16, 16, 24, 32, 40)]
    for ev in events:
        rep.progress(ev)  # back to back: no event is dropped for coming too soon
    err = capsys.readouterr().err.splitlines()
    assert [re.search(r"progress: rows (\d+)/40", ln).group(1) for ln in err] == ["0", "8", "16", "24", "32", "40"]
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d rayctl: progress: ", ln) for ln in err)
    assert err[-1].endswith("rows 40/40 (100%) · 320 output tokens · generating")


def test_rate_and_eta():
    now = [100.0]
    r = Rate(clock=lambda: now[0])
    r.feed({"done": 0, "total": 100, "output_tokens": 0})
    assert r.tokens_per_s() is None and r.eta_s(100) is None
    now[0] = 110.0
    r.feed({"done": 25, "total": 100, "output_tokens": 500})
    assert r.tokens_per_s() == pytest.approx(50.0) and r.eta_s(100) == pytest.approx(30.0)
    assert format_progress({"unit": "rows", "done": 25, "total": 100, "output_tokens": 500}, eta_s=30) == \
        "rows 25/100 (25%) · 500 output tokens · ETA 30 s"


def test_protocol_progress_carries_output_tokens():
    buf = io.StringIO()
    line = protocol.progress(3, 9, "rows", "x", output_tokens=24, stream=buf)
    assert protocol.parse_line(line)["output_tokens"] == 24
    assert "output_tokens" not in protocol.parse_line(protocol.progress(3, 9, stream=io.StringIO()))
    bad = protocol.parse_line('::rayctl:: {"type":"progress","done":1,"output_tokens":"many"}')
    assert bad is not None and "output_tokens" not in bad


# ---------------------------------------------------------------------------- end to end


def _recipe(tmp_path: Path, name: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nkind: batch-infer\ntarget: local\nworkload:\n"
                 f"  input: {REPO / 'examples' / 'data' / 'prompts.jsonl'}\n  output: {tmp_path / name}\n"
                 "  model: rayctl-demo\n  engine: transformers\n  batch_size: 8\n  concurrency: 1\n"
                 "  max_new_tokens: 16\n  limit: 48\n")
    return p


def _under_pty(args, env: dict, timeout: float = 400) -> tuple[int, str]:
    """`rayctl ARGS` with a pseudo-terminal as stdin/stdout/stderr; (exit code, what it wrote)."""
    import fcntl
    import pty
    import select
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    full = dict(os.environ, **env, TERM="xterm-256color")
    for k in ("COLUMNS", "LINES", "NO_COLOR", "RAYCTL_DEBUG"):
        full.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "rayctl", *map(str, args)], stdin=slave, stdout=slave,
                            stderr=slave, env=full, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_launch_screen_plain_and_on_a_terminal(local_cluster, tmp_path):
    home = tmp_path / "home"  # one home for both launches: the demo model is built once
    env = {"RAYCTL_HOME": str(home), "HOME": str(tmp_path)}

    # 1. Plain (a pipe, like CI or cron): timestamped rayctl lines, nothing from Ray or the libraries.
    res = run_cli("launch", _recipe(tmp_path, "plain"), env=env, timeout=600)
    assert res.code == 0, res
    assert_no_traceback(res)
    [row] = ledger_rows(home)
    rid = row["id"]
    for ln in res.err.splitlines():
        assert re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d rayctl: |rayctl: warning: )", ln), ln
    for ln in res.out.splitlines():
        assert ln.startswith(f"succeeded run {rid} ") or ln.startswith("  "), ln
    screen = res.out + res.err
    for noise in ("INFO", "WARNING", "core_worker", "Progress bars", "%|", "it/s", "Full logs", "session_",
                  "Running entrypoint", "MapWorker", "::rayctl::", str(local_cluster.temp_dir), row["log_path"]):
        assert noise not in screen, (noise, screen)
    assert "engine transformers: 1 replica(s)" in res.err  # the workload's own rayctl lines
    assert screen.count("tokens/s") == 1 and "tok/s" not in screen, screen  # one throughput figure, labelled
    assert re.search(r"throughput: [\d.,]+ output tokens/s \([\d,]+ output tokens in the job's ", res.out)
    assert f"the job's whole output: `rayctl logs {rid}`" in res.out
    assert "the local Ray cluster keeps running for the next launch; `rayctl down` stops it" in res.out
    # Every progress event the job printed is on the screen, in order.
    log = Path(row["log_path"]).read_text()
    printed = [(ev["done"], ev["message"]) for ev in map(protocol.parse_line, log.splitlines())
               if ev and ev["type"] == "progress"]
    shown = [(int(m.group(1)), m.group(2)) for m in
             re.finditer(r"progress: rows (\d+)/48 \(\d+%\)(?: · [^·\n]+ output tokens)?(?: · ETA [^·\n]+)? · (.+)",
                         res.err)]
    assert len(printed) >= 2 and shown == [p for i, p in enumerate(printed) if i == 0 or p != printed[i - 1]]
    assert re.search(r"progress: rows 48/48 \(100%\) · [\d,]+ output tokens · wrote ", res.err), res.err

    # 2. `rayctl logs RUN`: the job's output with Ray's lines, without the protocol lines; --raw keeps them.
    logs = run_cli("logs", rid, env=env)
    assert logs.code == 0, logs
    assert "Running entrypoint for job" in logs.out and "rayctl: engine transformers" in logs.out
    assert "::rayctl::" not in logs.out
    raw = run_cli("logs", rid, "--raw", env=env)
    assert raw.code == 0 and raw.out.count('::rayctl:: {"type":"progress"') == len(printed)
    assert '::rayctl:: {"type":"metrics"' in raw.out

    # 3. On a terminal, with --verbose: the one bar renders and finishes; Ray's lines stream too.
    code, text = _under_pty(["launch", _recipe(tmp_path, "tty"), "--verbose"], env)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert code == 0, plain[-3000:]
    assert "Traceback" not in plain
    assert re.search(r"rows .*━+.* \d+/48 · .*ETA", plain), plain[-3000:]  # running
    assert re.search(r"✔ rows .*━+ 48/48 · [\d,]+ tokens", plain), plain[-3000:]  # finished
    assert "Running entrypoint for job" in plain and "INFO" in plain  # --verbose streams Ray's lines
    assert "rayctl: engine transformers" in plain and "throughput: " in plain
    assert "the local Ray cluster keeps running for the next launch" in plain


def test_ray_log_dedup_keeps_protocol_lines_with_the_job_env():
    """Ray's own log deduplicator (the one a job driver runs) with and without rayctl's JOB_ENV setting:
    protocol lines from two worker processes are all kept with it, folded without it."""
    from ray._private.ray_logging import LogDeduplicator

    lines = [protocol.progress(d, 4, "steps", stream=io.StringIO()) for d in (1, 2, 3, 4)]

    def kept(allow_re) -> list:
        dedup = LogDeduplicator(5, allow_re, None, _timesource=lambda: 0.0)
        out = []
        for pid, batch in ((101, lines[:2]), (202, lines[2:])):
            for b in dedup.deduplicate({"ip": "127.0.0.1", "pid": pid, "lines": list(batch)}):
                out += b["lines"]
        return out

    assert kept(None) == lines[:2]  # what Ray does by default: the second worker's lines are folded away
    assert kept(protocol.JOB_ENV["RAY_DEDUP_LOGS_ALLOW_REGEX"]) == lines
