"""Suite-wide checks, as a pytest plugin (registered by tests/conftest.py; usable alone
with `-p tests.suitecheck`, which is how tests/test_suite_checks.py runs it on tiny suites):

- `require_infra(reason)`: required infrastructure is missing (the test catalog, a Ray head
  that will not start): a skip on a developer machine, a failure when $CI is set. Any skip
  whose reason carries the same message is turned into a failure in CI too.
- the session-end leak check: a process this session started that is still alive when
  every fixture has been torn down fails the run, and is named and killed.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests import proctrack

INFRA_MISSING = "required test infrastructure missing: "


def ci() -> bool:
    """True on a CI runner ($CI set to anything but empty/0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_infra(reason: str):
    """A test cannot run because infrastructure the suite REQUIRES is missing (the test
    catalog, a Ray head that would not start): skip locally, fail in CI ($CI set), so a
    broken runner can never turn the suite green by skipping it. Never use it for optional
    tools (a real crontab binary, vllm): those stay `pytest.skip`."""
    if ci():
        pytest.fail(INFRA_MISSING + reason + " (a failure because $CI is set)", pytrace=False)
    pytest.skip(INFRA_MISSING + reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI, a skip that reports missing required infrastructure (however it was raised:
    `require_infra`, or a plain `pytest.skip` carrying its message) is a failure."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and ci() and isinstance(rep.longrepr, tuple) and INFRA_MISSING in str(rep.longrepr[2]):
        rep.outcome = "failed"
        rep.longrepr = f"{rep.longrepr[2]} (a failure because $CI is set)"


# ---------------------------------------------------------------------------- leaked processes


def pytest_configure(config):
    # Every process this session starts (CLI runs, Ray heads and what they fork) inherits
    # this marker; the session-end check finds them by it and never by name.
    proctrack.mark_session()


_worker_leaks: list[str] = []  # on the xdist controller: what each worker reported


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist, on the controller: a worker ended; keep the leaks it found in its own session."""
    _worker_leaks.extend((getattr(node, "workeroutput", None) or {}).get("rayctl_leaked") or [])


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """After every fixture is torn down: fail the run if a process this session started is
    still alive (a Ray head a test did not stop). They are killed too, and named.

    Under pytest-xdist each worker is a session of its own (its own marker): it checks its
    processes and hands the names to the controller in `workeroutput` (this wrapper is the
    innermost, so it runs before xdist sends that), and the controller fails the run."""
    yield
    if os.environ.get(proctrack.SESSION_ENV) != proctrack.session_token():
        return
    config = session.config
    lines: list[str] = []
    if not config.pluginmanager.hasplugin("dsession"):  # the xdist controller runs no test itself
        grace = float(os.environ.get("RAYCTL_TEST_LEAK_GRACE_S", "15"))
        lines = [f"  pid {pid}: {cmd}" for pid, cmd in proctrack.leftovers(grace=grace)]
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports and fails the run
        workeroutput["rayctl_leaked"] = lines
        return
    lines += _worker_leaks
    if not lines:
        return
    msg = (f"{len(lines)} process(es) started by this test session were still alive at its end "
           f"(now killed) - a test did not stop what it started:\n" + "\n".join(lines))
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line("")
        tr.write_line("LEAKED PROCESSES: " + msg, red=True, bold=True)
    else:
        print("LEAKED PROCESSES: " + msg, file=sys.stderr)
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
