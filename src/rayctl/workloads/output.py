"""Where the built-in workloads write, and the one rule for it: rayctl only ever deletes
files it wrote.

**Result folders** (batch-infer `output`). The folder holds the result files directly
plus a small manifest, `.rayctl-manifest.json`, that lists the files rayctl wrote there
and for which recipe::

    {"version": 1, "recipe": "nightly", "kind": "batch-infer", "run_id": "...",
     "files": ["7f3a_000000_000000.jsonl", ...], "written_at": "2026-12-02T06:00:00Z"}

`check_folder` decides whether a run may write there: a missing or empty folder is fine;
with `overwrite` (the default) a folder holding only that recipe's manifest and the files
it lists is fine; any other entry is *foreign* and the folder is refused (`Refused`
names one such entry). With `overwrite: false` any non-empty folder is refused.

`Publisher` writes through a staging folder, `<folder>/.rayctl-staging-<run>/` (hidden:
Ray Data and most readers skip names starting with "."), created by rayctl with a marker
file in it. On success (`commit`) it checks the folder again, writes a manifest listing
the old and the new files (so a crash half-way never leaves a file rayctl wrote
unlisted), moves the new files into place (a JSONL output's files end in `.jsonl`),
deletes the previously listed files that were not replaced, writes the final manifest
atomically and removes its staging folder. On failure (`abort`) it removes only its
staging folder (and the output folder itself when rayctl created it and it is empty):
the previous results and manifest stay as they were. Nothing above the folder is ever
touched, and a manifest entry is only ever a plain file name inside the folder.

**Experiment folders** (train/tune `storage/<experiment>`). Ray Train / Tune own what is
written there (checkpoints, trial results; Ray Train resumes from it). rayctl claims the
folder with the same manifest (`"files": []`, `"managed_by": "ray"`) before the
experiment starts; a folder that exists, is not empty and holds no rayctl manifest of
this recipe is refused. rayctl deletes nothing there (Ray Train keeps only the newest
`keep_checkpoints` checkpoints it wrote itself).

Local paths use only the standard library (the client runs these checks before any
cluster starts); s3:// and other URIs go through pyarrow's filesystems (on the cluster).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import time
from typing import Callable

MANIFEST = ".rayctl-manifest.json"
STAGING_PREFIX = ".rayctl-staging-"
STAGING_MARKER = ".rayctl-staging.json"
MANIFEST_VERSION = 1


class Refused(Exception):
    """A folder rayctl will not write to; `entry` is the offending file (a full path) if any."""

    def __init__(self, message: str, entry: str | None = None):
        super().__init__(message)
        self.entry = entry


# ---------------------------------------------------------------- filesystems

def _is_uri(path: str) -> bool:
    from .common import is_uri

    return is_uri(path)


class LocalFS:
    """A local folder, with the standard library only."""

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def entries(self, folder: str) -> list[tuple[str, str]]:
        """Top-level (name, 'file'|'dir'|'other') of `folder`; [] when it does not exist."""
        if not os.path.lexists(folder):
            return []
        if not os.path.isdir(folder):
            raise Refused(f"{folder} exists and is not a folder", folder)
        out = []
        with os.scandir(folder) as it:
            for e in it:
                if e.is_symlink():
                    kind = "other"
                elif e.is_file(follow_symlinks=False):
                    kind = "file"
                elif e.is_dir(follow_symlinks=False):
                    kind = "dir"
                else:
                    kind = "other"
                out.append((e.name, kind))
        return sorted(out)

    def files_under(self, folder: str) -> list[str]:
        """Relative paths of every file under `folder` (recursive)."""
        out = []
        for root, _dirs, files in os.walk(folder):
            for f in files:
                out.append(os.path.relpath(os.path.join(root, f), folder))
        return sorted(out)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_file(self, path: str) -> bool:
        return os.path.isfile(path) and not os.path.islink(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes) -> None:
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def move(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def delete_file(self, path: str) -> None:
        os.remove(path)

    def delete_own_tree(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)

    def rmdir_if_empty(self, path: str) -> None:
        try:
            os.rmdir(path)
        except OSError:
            pass


class ArrowFS:
    """An s3:// (or other URI) folder through pyarrow's filesystems: a folder is a key prefix."""

    def __init__(self, uri: str):
        from pyarrow import fs as pafs

        self.pafs = pafs
        self.fs, _ = pafs.FileSystem.from_uri(uri)
        self.scheme = uri.split("://", 1)[0]

    def path(self, p: str) -> str:
        return p.split("://", 1)[1].rstrip("/") if "://" in p else p.rstrip("/")

    def join(self, *parts: str) -> str:
        head, rest = parts[0].rstrip("/"), [x.strip("/") for x in parts[1:]]
        return "/".join([head, *rest])

    def _infos(self, folder: str, recursive: bool):
        sel = self.pafs.FileSelector(self.path(folder), allow_not_found=True, recursive=recursive)
        return self.fs.get_file_info(sel)

    def entries(self, folder: str) -> list[tuple[str, str]]:
        info = self.fs.get_file_info(self.path(folder))
        if info.type == self.pafs.FileType.File:
            raise Refused(f"{folder} exists and is not a folder", folder)
        out = {}
        base = self.path(folder) + "/"
        for i in self._infos(folder, recursive=False):
            name = i.path[len(base):] if i.path.startswith(base) else posixpath.basename(i.path)
            out[name] = "file" if i.type == self.pafs.FileType.File else "dir"
        return sorted(out.items())

    def files_under(self, folder: str) -> list[str]:
        base = self.path(folder) + "/"
        return sorted(i.path[len(base):] for i in self._infos(folder, recursive=True)
                      if i.type == self.pafs.FileType.File and i.path.startswith(base))

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(self.path(path)).type != self.pafs.FileType.NotFound

    def is_file(self, path: str) -> bool:
        return self.fs.get_file_info(self.path(path)).type == self.pafs.FileType.File

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(self.path(path)) as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes) -> None:  # one PUT: atomic on S3
        with self.fs.open_output_stream(self.path(path)) as f:
            f.write(data)

    def makedirs(self, path: str) -> None:
        self.fs.create_dir(self.path(path), recursive=True)

    def move(self, src: str, dst: str) -> None:
        self.fs.copy_file(self.path(src), self.path(dst))
        self.fs.delete_file(self.path(src))

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(self.path(path))

    def delete_own_tree(self, path: str) -> None:
        for rel in self.files_under(path):
            self.fs.delete_file(self.path(self.join(path, rel)))
        try:
            self.fs.delete_dir(self.path(path))
        except OSError:
            pass

    def rmdir_if_empty(self, path: str) -> None:
        pass  # S3 has no folders to leave behind


def filesystem(path: str):
    return ArrowFS(path) if _is_uri(path) else LocalFS()


# ---------------------------------------------------------------- the manifest

def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _plain_name(name) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\x00" not in name and not name.startswith(".rayctl"))


def read_manifest(fs, folder: str) -> dict | None:
    """The folder's manifest, or None when it has none; Refused when it is not one rayctl wrote."""
    path = fs.join(folder, MANIFEST)
    if not fs.exists(path):
        return None
    try:
        data = json.loads(fs.read(path).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("files"), list) and isinstance(data.get("recipe"), str)
            and all(_plain_name(f) for f in data["files"])):
        raise Refused(f"{path} is not a manifest rayctl wrote (unreadable, or it lists paths outside the folder); "
                      "move it away or choose another folder", path)
    return data


def manifest_bytes(recipe: str, kind: str, run_id: str, files, **extra) -> bytes:
    doc = {"version": MANIFEST_VERSION, "recipe": recipe, "kind": kind, "run_id": run_id,
           "files": sorted(files), "written_at": _now(), **extra}
    return (json.dumps(doc, indent=1) + "\n").encode()


def _is_staging(fs, folder: str, name: str, kind: str) -> bool:
    """A run's staging folder (rayctl's by its name; a killed run can leave one behind)."""
    return kind == "dir" and name.startswith(STAGING_PREFIX)


# ---------------------------------------------------------------- result folders

def check_folder(fs, folder: str, *, recipe: str, overwrite: bool, what: str = "output folder") -> dict | None:
    """Refuse `folder` unless this recipe may write there; returns its manifest (or None)."""
    entries = fs.entries(folder)
    if not entries:
        return None
    if not overwrite:
        name = next((n for n, _ in entries if not n.startswith(".")), entries[0][0])
        raise Refused(f"{what} {folder} is not empty (it holds {fs.join(folder, name)}) and workload.overwrite "
                      "is false; empty it or choose another folder", fs.join(folder, name))
    names = {n for n, _ in entries}
    manifest = read_manifest(fs, folder) if MANIFEST in names else None
    owned = set(manifest["files"]) if manifest else set()
    for name, kind in entries:
        if name == MANIFEST or _is_staging(fs, folder, name, kind) or (kind == "file" and name in owned):
            continue
        path = fs.join(folder, name)
        raise Refused(f"{what} {folder} holds {path}, which rayctl did not write; rayctl only replaces the "
                      f"files its manifest ({MANIFEST}) lists and never deletes others. Move that file away or "
                      "choose another (new or empty) folder", path)
    if manifest and manifest["recipe"] != recipe:
        path = fs.join(folder, MANIFEST)
        raise Refused(f"{what} {folder} holds the results of recipe '{manifest['recipe']}' (per {path}), not "
                      f"'{recipe}'; give each recipe its own folder", path)
    return manifest


class Publisher:
    """Write a run's result files through a staging folder; publish on success only."""

    def __init__(self, folder: str, *, recipe: str, kind: str, run_id: str, overwrite: bool,
                 rename: Callable[[str], str] | None = None, fs=None):
        self.fs = fs or filesystem(folder)
        self.folder = folder.rstrip("/") if _is_uri(folder) else folder
        self.recipe, self.kind, self.run_id, self.overwrite = recipe, kind, run_id, overwrite
        self.rename = rename or (lambda n: n)
        self.staging = self.fs.join(self.folder, STAGING_PREFIX + _safe(run_id))
        self.created_folder = False
        self.files: list[str] = []

    def begin(self) -> str:
        """Check the folder and create this run's staging folder; returns its path."""
        check_folder(self.fs, self.folder, recipe=self.recipe, overwrite=self.overwrite)
        if not self.fs.exists(self.folder):
            self.created_folder = True
        self.fs.makedirs(self.folder)
        if self.fs.exists(self.staging):
            raise Refused(f"staging folder {self.staging} already exists (another run with id {self.run_id}?)",
                          self.staging)
        self.fs.makedirs(self.staging)
        self.fs.write_atomic(self.fs.join(self.staging, STAGING_MARKER),
                             json.dumps({"recipe": self.recipe, "run_id": self.run_id, "created_at": _now()}).encode())
        return self.staging

    def staged_files(self) -> list[str]:
        return [f for f in self.fs.files_under(self.staging) if f != STAGING_MARKER]

    def commit(self) -> list[str]:
        """Move the staged files into place, drop the replaced ones, write the manifest.

        Returns the full paths of the published files."""
        fs = self.fs
        manifest = check_folder(fs, self.folder, recipe=self.recipe, overwrite=True)  # again: it may have changed
        if not self.overwrite and any(n for n, k in fs.entries(self.folder)
                                      if not (k == "dir" and n == posixpath.basename(self.staging))):
            raise Refused(f"output folder {self.folder} got other files while the run wrote and "
                          "workload.overwrite is false")
        staged = self.staged_files()
        moves = []
        for rel in staged:
            if "/" in rel or os.sep in rel:
                raise Refused(f"the job wrote a nested file {rel}; result folders hold files directly")
            name = self.rename(rel)
            if not _plain_name(name):
                raise Refused(f"cannot publish {rel} as '{name}'")
            moves.append((rel, name))
        new = [n for _, n in moves]
        if len(set(new)) != len(new):
            raise Refused("two result files map to one name")
        old = list(manifest["files"]) if manifest else []
        for name in new:  # never overwrite a file the manifest does not list
            if name not in old and fs.exists(fs.join(self.folder, name)):
                raise Refused(f"{fs.join(self.folder, name)} appeared while the run wrote; not overwriting it",
                              fs.join(self.folder, name))
        man = fs.join(self.folder, MANIFEST)
        fs.write_atomic(man, manifest_bytes(self.recipe, self.kind, self.run_id, set(old) | set(new),
                                            state="publishing"))
        for rel, name in moves:
            fs.move(fs.join(self.staging, rel), fs.join(self.folder, name))
        for name in old:
            if name not in new:
                p = fs.join(self.folder, name)
                if fs.is_file(p):
                    fs.delete_file(p)
        fs.write_atomic(man, manifest_bytes(self.recipe, self.kind, self.run_id, new))
        fs.delete_own_tree(self.staging)
        self.files = [fs.join(self.folder, n) for n in sorted(new)]
        return self.files

    def abort(self) -> None:
        """Remove this run's staging folder only; the folder's previous content stays."""
        try:
            if self.fs.exists(self.staging) and self.fs.exists(self.fs.join(self.staging, STAGING_MARKER)):
                self.fs.delete_own_tree(self.staging)
            if self.created_folder:
                self.fs.rmdir_if_empty(self.folder)
        except OSError:
            pass


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(run_id)) or "run"


def jsonl_name(name: str) -> str:
    """Ray Data names JSON lines files `*.json`; a JSONL output's files end in `.jsonl`."""
    return name[:-5] + ".jsonl" if name.endswith(".json") else name


# ---------------------------------------------------------------- experiment folders

def check_experiment(fs, storage: str, experiment: str, *, recipe: str) -> str:
    """Refuse `storage/experiment` unless it is missing, empty, or claimed by this recipe."""
    folder = fs.join(storage, experiment)
    entries = fs.entries(folder)
    if not entries:
        return folder
    names = {n for n, _ in entries}
    if MANIFEST not in names:
        path = fs.join(folder, sorted(names)[0])
        raise Refused(f"experiment folder {folder} already holds {path}, which rayctl did not write (rayctl "
                      f"claims the folders it lets Ray Train/Tune write with a {MANIFEST}). Move it away, or "
                      "set workload.storage to another folder", path)
    m = read_manifest(fs, folder)
    if m["recipe"] != recipe:
        path = fs.join(folder, MANIFEST)
        raise Refused(f"experiment folder {folder} belongs to recipe '{m['recipe']}' (per {path}), not "
                      f"'{recipe}'; set workload.storage to another folder", path)
    return folder


def claim_experiment(storage: str, experiment: str, *, recipe: str, kind: str, run_id: str, fs=None) -> str:
    """Check the experiment folder and write rayctl's manifest into it (before Ray writes there)."""
    fs = fs or filesystem(storage)
    folder = check_experiment(fs, storage, experiment, recipe=recipe)
    fs.makedirs(folder)
    fs.write_atomic(fs.join(folder, MANIFEST),
                    manifest_bytes(recipe, kind, run_id, [], managed_by="ray", experiment=experiment))
    return folder
