"""The on-disk cache of compiled pieces.

One directory per entry, ``<root>/<key[:2]>/<key>/``, holding the artifact and a
``meta.json`` with its SHA-256. Keys are derived from what a piece computes and how it
was compiled (never from a path), so a cache directory can be moved or copied.

* Writes are atomic: an entry is written to a private temporary directory and renamed
  into place; when two processes race, the first rename wins and the other discards
  its copy.
* A truncated or corrupted entry (checksum or load failure) is logged, removed and
  recompiled, never a crash.
* Loading an artifact runs code, so the cache refuses a directory that another user
  owns or that group or others can write.
* Least recently used entries are evicted past ``max_bytes``.
* It removes nothing that is not its own. A directory it creates, or finds empty, it
  marks as an fxsplit cache (a marker file, and a ``CACHEDIR.TAG`` so that backup
  tools skip it); it refuses any other directory that holds something, and eviction
  and ``clear`` touch only entries, ``tmp/`` and ``inductor/``.

``<root>/inductor/`` holds Inductor's own cache files for the pieces (on CPU, the
kernel libraries gcc built, and the answers of Inductor's CPU probe), so that a warm
start needs nothing outside the root. The size limit counts it as one more entry:
evicting it costs kernel rebuilds, never a wrong result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _compat

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 2**30
ARTIFACT = "artifact.bin"
META = "meta.json"
COMPILER_FILES = "inductor"
ISA_PROBES = "fxsplit-isa-probes.json"  # inside COMPILER_FILES
MARKER = "FXSPLIT-CACHE"
CACHEDIR_TAG = "CACHEDIR.TAG"
_TMP = "tmp"
_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by fxsplit.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_MARKER_TEXT = "fxsplit cache directory: compiled pieces; `fxsplit cache clear` empties it\n"
_SHARD = re.compile(r"[0-9a-f]{2}")
_KEY = re.compile(r"[0-9a-f]{64}")


class UnsafeCacheDirError(PermissionError):
    """The cache directory could let someone else's code be loaded."""


class NotACacheDirError(FileExistsError):
    """The directory holds files that are not an fxsplit cache's."""


DEFAULT_CACHE_DIR = "default"
"""``cache_dir`` value meaning :func:`default_cache_dir`."""


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """The directory a ``cache_dir`` argument names: the default one for
    ``DEFAULT_CACHE_DIR``, none when it is None or ``FXSPLIT_DISABLE_CACHE=1``."""
    if os.environ.get("FXSPLIT_DISABLE_CACHE") == "1" or cache_dir is None:
        return None
    return default_cache_dir() if cache_dir == DEFAULT_CACHE_DIR else Path(cache_dir)


def default_cache_dir() -> Path | None:
    """``$FXSPLIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fxsplit``, else ``~/.cache/fxsplit``;
    None when ``FXSPLIT_DISABLE_CACHE=1``."""
    if os.environ.get("FXSPLIT_DISABLE_CACHE") == "1":
        return None
    if explicit := os.environ.get("FXSPLIT_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fxsplit"


@dataclass
class CacheInfo:
    root: Path
    entries: int
    bytes: int


class PieceCache:
    """Compiled artifacts by key, under ``root``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        create: bool = True,
        loads: bool = True,
    ) -> None:
        """The cache at ``root``, made (and marked) there if needed; with
        ``create=False`` nothing is written, and a missing or empty ``root`` is a
        ``FileNotFoundError``. A directory that is not an fxsplit cache is refused
        first (:class:`NotACacheDirError`); then, where artifacts will be loaded
        from it (``loads``), one that someone else could write
        (:class:`UnsafeCacheDirError`)."""
        self.root = Path(root)
        self.max_bytes = max_bytes
        if create:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not self.root.is_dir() or not any(self.root.iterdir()):
            raise FileNotFoundError(f"there is no fxsplit cache at {self.root}")
        marked = (self.root / MARKER).is_file()
        if not (marked or (create and not any(self.root.iterdir())) or _is_legacy_cache(self.root)):
            raise NotACacheDirError(
                f"{self.root} is not an fxsplit cache (it has no {MARKER} file) and is not empty; fxsplit neither "
                f"uses nor clears such a directory: name a new or empty one (cache_dir= in Python, --dir on the "
                f"command line, or FXSPLIT_CACHE_DIR)"
            )
        if loads:
            self._check_safe(marked)
        if create and not marked:
            (self.root / CACHEDIR_TAG).write_text(_TAG_TEXT)
            (self.root / MARKER).write_text(_MARKER_TEXT)

    def unsafe_reason(self) -> str | None:
        """Why artifacts must not be loaded from this directory, if they must not: it
        belongs to someone else, or group or others can write it."""
        info = self.root.stat()
        if info.st_uid != os.getuid():
            return f"it belongs to uid {info.st_uid}, not you"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"it is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
        return None

    def _check_safe(self, marked: bool) -> None:
        reason = self.unsafe_reason()
        if reason is None:
            return
        # only a directory that is fxsplit's own gets advice on its permissions
        fix = f"run `chmod go-w {self.root}` (fxsplit made it), or name" if marked and "mode" in reason else "name"
        raise UnsafeCacheDirError(
            f"refusing to use fxsplit cache {self.root}: {reason}, and loading a cached artifact runs its code; "
            f"{fix} a directory of your own that only you can write (cache_dir= in Python, --dir on the command "
            f"line, or FXSPLIT_CACHE_DIR), or set FXSPLIT_DISABLE_CACHE=1"
        )

    def _entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def __contains__(self, key: str) -> bool:
        """Whether an entry for ``key`` is there (it may still fail its checksum)."""
        return (self._entry(key) / ARTIFACT).exists()

    def read(self, key: str) -> bytes | None:
        """The bytes stored for ``key``, or None on a miss. A damaged entry (a
        checksum that does not match) is removed, and reported, so that the caller
        compiles again."""
        entry = self._entry(key)
        artifact = entry / ARTIFACT
        if not artifact.exists():
            return None
        try:
            expected = json.loads((entry / META).read_text())["sha256"]
            data = artifact.read_bytes()
            if hashlib.sha256(data).hexdigest() != expected:
                raise ValueError("checksum mismatch")
        except Exception as error:
            self.discard(key, f"damaged: {error}")
            return None
        os.utime(entry)  # recency, for eviction
        return data

    def load(self, key: str, loader: Callable[[bytes], Any]) -> Any | None:
        """The artifact for ``key`` made by ``loader(bytes)``, or None on a miss; an
        entry the loader fails on counts as damaged."""
        data = self.read(key)
        if data is None:
            return None
        try:
            return loader(data)
        except Exception as error:
            self.discard(key, f"damaged: {error}")
            return None

    def discard(self, key: str, reason: str) -> None:
        """Remove the entry for ``key``, saying why."""
        entry = self._entry(key)
        log.warning("fxsplit cache entry %s is %s; compiling it again", entry, reason)
        shutil.rmtree(entry, ignore_errors=True)

    def store(self, key: str, write: Callable[[Path], object], description: dict[str, Any]) -> None:
        """Write an entry with ``write(path)``; atomic, and the first of racing writers wins."""
        entry = self._entry(key)
        if (entry / ARTIFACT).exists():
            return
        scratch = self.root / _TMP
        scratch.mkdir(mode=0o700, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=scratch))
        try:
            write(staging / ARTIFACT)
            meta = {**description, "sha256": _sha256(staging / ARTIFACT), "written": time.time()}
            (staging / META).write_text(json.dumps(meta, indent=2))
            entry.parent.mkdir(mode=0o700, exist_ok=True)
            try:
                staging.rename(entry)
            except OSError:  # another process stored it first
                return
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.evict()

    def compiler_files(self) -> Path:
        """The directory for the compiler's own cache files, marked as just used."""
        directory = self.root / COMPILER_FILES
        directory.mkdir(mode=0o700, exist_ok=True)
        os.utime(directory)
        return directory

    @contextlib.contextmanager
    def compiler_context(self) -> Iterator[Path]:
        """Inductor's cache files in :meth:`compiler_files` for the block, and the
        answers of its CPU instruction-set probe kept there too, so that a warm start
        neither rebuilds kernels nor probes the CPU again (2 s here)."""
        directory = self.compiler_files()
        machine = _compat.isa_probe_machine()
        answers: MutableMapping[str, bool] = {}
        if machine is not None:
            answers = _KeptAnswers(self, directory / ISA_PROBES, machine)
        with _compat.inductor_cache_at(str(directory)), _compat.isa_probe_answers(answers):
            yield directory

    def _replace_json(self, path: Path, value: dict[str, Any]) -> None:
        """Write a small file of the cache's own atomically, staged in ``tmp/``; failing to
        costs a probe next time, nothing else."""
        scratch = self.root / _TMP
        try:
            scratch.mkdir(mode=0o700, exist_ok=True)
            descriptor, staged = tempfile.mkstemp(dir=scratch)
        except OSError as error:
            log.info("fxsplit cache: could not write %s (%s)", path, error)
            return
        try:
            with os.fdopen(descriptor, "w") as file:
                json.dump(value, file)
            os.replace(staged, path)
        except OSError as error:
            log.info("fxsplit cache: could not write %s (%s)", path, error)
            with contextlib.suppress(OSError):
                os.unlink(staged)

    def entries(self) -> list[tuple[Path, int, float]]:
        """(entry, bytes, last used) for every complete entry."""
        found = []
        for artifact in self.root.glob(f"??/*/{ARTIFACT}"):
            entry = artifact.parent
            if not (_SHARD.fullmatch(entry.parent.name) and _KEY.fullmatch(entry.name)):
                continue
            found.append((entry, _tree_bytes(entry), entry.stat().st_mtime))
        return found

    def _evictable(self) -> list[tuple[Path, int, float]]:
        units = self.entries()
        compiler_files = self.root / COMPILER_FILES
        if compiler_files.is_dir():
            units.append((compiler_files, _tree_bytes(compiler_files), compiler_files.stat().st_mtime))
        return units

    def evict(self) -> None:
        """Remove least recently used entries until the cache fits ``max_bytes``."""
        entries = sorted(self._evictable(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        for entry, size, _ in entries:
            if total <= self.max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size
            log.info("fxsplit cache: evicted %s (%d bytes) to stay under %d bytes", entry.name, size, self.max_bytes)

    def info(self) -> CacheInfo:
        """Compiled pieces, and the bytes of everything the cache holds."""
        return CacheInfo(self.root, len(self.entries()), sum(size for _, size, _ in self._evictable()))

    def clear(self) -> int:
        """Remove every entry, the staging area and the compiler's files, and nothing
        else; returns how many entries there were."""
        entries = self.entries()
        for entry, _, _ in entries:
            shutil.rmtree(entry, ignore_errors=True)
        for shard in self.root.iterdir():
            if _SHARD.fullmatch(shard.name) and shard.is_dir():
                with contextlib.suppress(OSError):
                    shard.rmdir()  # only once it is empty
        for own in (_TMP, COMPILER_FILES):
            shutil.rmtree(self.root / own, ignore_errors=True)
        return len(entries)


class _KeptAnswers(MutableMapping[str, bool]):
    """The answers of Inductor's CPU probe on one machine, as the cache's file keeps
    them: each written as it is learnt, and the file read again on a miss, so that
    processes probing at the same time (a worker's start-up and the caller's first
    compile) share what each learns rather than each loading every library."""

    def __init__(self, cache: PieceCache, path: Path, machine: str) -> None:
        self._cache, self._path, self._machine = cache, path, machine
        self._lock = threading.Lock()  # a process's probe threads learn at the same time
        self._known: dict[str, bool] = {}
        self._read()

    def _read(self) -> None:
        kept = _read_json(self._path).get(self._machine, {})
        self._known.update({k: v for k, v in kept.items() if isinstance(v, bool)})

    def __getitem__(self, library: str) -> bool:
        if library not in self._known:
            self._read()
        return self._known[library]

    def __setitem__(self, library: str, answer: bool) -> None:
        with self._lock:
            self._known[library] = answer
            kept = _read_json(self._path)
            mine = {**kept.get(self._machine, {}), **self._known}
            self._cache._replace_json(self._path, {**kept, self._machine: mine})

    def __delitem__(self, library: str) -> None:
        raise TypeError("a probe's answer is not taken back")

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


def _read_json(path: Path) -> dict[str, Any]:
    """A small JSON file of the cache's own, or {} where it is missing or damaged."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _is_legacy_cache(root: Path) -> bool:
    """A cache written before caches were marked: nothing but key shards, ``tmp/`` and
    ``inductor/``, and at least one entry."""
    found = False
    for child in root.iterdir():
        if child.name in (_TMP, COMPILER_FILES) and child.is_dir():
            continue
        if not (_SHARD.fullmatch(child.name) and child.is_dir()):
            return False
        for entry in child.iterdir():
            if not (_KEY.fullmatch(entry.name) and entry.name.startswith(child.name) and entry.is_dir()):
                return False
            found = True
    return found


def _tree_bytes(directory: Path) -> int:
    """Bytes of the files under ``directory``; another process may be writing or
    evicting there, so files and folders that vanish meanwhile count as empty."""
    total = 0
    for parent, _, files in os.walk(directory):  # skips folders that vanish
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(parent, name)).st_size
    return total


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
