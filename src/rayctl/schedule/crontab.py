"""Reading and writing crontabs, touching only rayctl's own lines.

A target is either the user's crontab, read and written through the real `crontab`
command (`crontab -l`, `crontab -`, `crontab -r`), or a plain file (`--crontab-file`)
for tests and for people who manage cron files themselves.

rayctl's lines end with a tag, ` # rayctl:schedule=NAME` (cron hands the whole line to
/bin/sh, which reads `#` as the start of a comment). Only lines with the tag are ever
changed; every other byte of the crontab is written back exactly as it was read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import InputError, RayctlError

TAG = "rayctl:schedule="
_TAG_RE = re.compile(rb"\s#\s*rayctl:schedule=([a-z0-9-]+)\s*$")
# Vixie/Debian cron refuse a command of 1000 bytes or more ("command too long").
MAX_COMMAND = 999


def tag(name: str) -> str:
    return f"# {TAG}{name}"


def tagged_name(line: bytes) -> str | None:
    """The schedule name a crontab line is tagged with, or None for a foreign line."""
    if line.lstrip().startswith(b"#"):
        return None  # a commented-out line is the user's, even if it was once ours
    m = _TAG_RE.search(line.rstrip(b"\r\n"))
    return m.group(1).decode() if m else None


def tagged(content: bytes) -> dict[str, list[bytes]]:
    """name -> rayctl lines (without line ends) found in a crontab."""
    out: dict[str, list[bytes]] = {}
    for line in content.splitlines():
        name = tagged_name(line)
        if name:
            out.setdefault(name, []).append(line)
    return out


def without(content: bytes, names) -> tuple[bytes, int]:
    """`content` minus the lines tagged with any of `names`; (new content, lines removed)."""
    names = set(names)
    kept, removed = [], 0
    for line in content.splitlines(keepends=True):
        if tagged_name(line) in names:
            removed += 1
        else:
            kept.append(line)
    return b"".join(kept), removed


def with_line(content: bytes, name: str, line: str) -> bytes:
    """`content` with `name`'s line set to `line`: replaced where it was, else appended."""
    new = line.encode() + b"\n"
    out, placed = [], False
    for old in content.splitlines(keepends=True):
        if tagged_name(old) == name:
            if not placed:
                out.append(new)
                placed = True
            continue
        out.append(old)
    if not placed:
        if out and not out[-1].endswith(b"\n"):
            out[-1] += b"\n"  # cron refuses a last line without a newline
        out.append(new)
    return b"".join(out)


class Target:
    """Where schedules are installed: the user's crontab, or a crontab-format file."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(os.path.abspath(os.path.expanduser(path))) if path else None

    @property
    def key(self) -> str | None:
        """How the registry records this target: None for the user's crontab, else the file path."""
        return str(self.path) if self.path else None

    @property
    def label(self) -> str:
        return f"crontab file {self.path}" if self.path else "the user's crontab"

    def read(self) -> bytes:
        if self.path:
            try:
                return self.path.read_bytes()
            except FileNotFoundError:
                return b""
            except IsADirectoryError:
                raise InputError(f"--crontab-file {self.path}: is a directory, not a crontab file") from None
            except OSError as e:
                raise InputError(f"--crontab-file {self.path}: cannot read: {e.strerror}") from None
        proc = _crontab(["-l"])
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            if "no crontab for" in err:
                return b""
            raise RayctlError(f"`crontab -l` failed (exit {proc.returncode}): {err}")
        return proc.stdout

    def write(self, content: bytes) -> None:
        if self.path:
            self._write_file(content)
            return
        if content == b"":
            proc = _crontab(["-r"])  # back to "no crontab", as before rayctl's first line
            err = proc.stderr.decode(errors="replace").strip()
            if proc.returncode != 0 and "no crontab for" not in err:
                raise RayctlError(f"`crontab -r` failed (exit {proc.returncode}): {err}")
            return
        proc = _crontab(["-"], content)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise RayctlError(f"`crontab -` refused the new crontab (exit {proc.returncode}): {err}")

    def _write_file(self, content: bytes) -> None:
        d = self.path.parent
        if not d.is_dir():
            raise InputError(f"--crontab-file {self.path}: folder {d} does not exist")
        try:
            mode = self.path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=d)
        except OSError as e:
            raise InputError(f"--crontab-file {self.path}: cannot write in {d}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _crontab(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("crontab")
    if exe is None:
        raise InputError("the `crontab` command is not installed (install cron, e.g. `apt-get install cron`), "
                         "or pass --crontab-file FILE to write a crontab file yourself")
    try:
        return subprocess.run([exe, *args], input=data, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise RayctlError(f"`crontab {' '.join(args)}` did not finish within 60 s") from None
