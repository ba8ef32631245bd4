"""The on-disk cache: atomic entries, damage detection, safety checks, eviction, and a
real cold/warm cycle across fresh processes (relocated, corrupted, concurrent)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fxsplit import _compat
from fxsplit.compilation.cache import (
    ARTIFACT,
    CACHEDIR_TAG,
    COMPILER_FILES,
    ISA_PROBES,
    MARKER,
    NotACacheDirError,
    PieceCache,
    UnsafeCacheDirError,
    default_cache_dir,
)

WORKER = Path(__file__).with_name("cache_worker.py")


def write_bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def test_store_then_load_round_trips(tmp_path):
    cache = PieceCache(tmp_path / "c")
    cache.store("ab" * 32, write_bytes(b"artifact"), {"piece": "submod_0"})
    assert cache.load("ab" * 32, lambda data: data) == b"artifact"
    assert cache.load("cd" * 32, lambda data: data) is None
    assert cache.info().entries == 1
    assert not any((tmp_path / "c" / "tmp").iterdir())  # nothing half-written left behind


def test_a_failed_write_leaves_nothing(tmp_path):
    cache = PieceCache(tmp_path / "c")

    def fail(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.store("ab" * 32, fail, {})
    assert cache.info().entries == 0
    assert not any((tmp_path / "c" / "tmp").iterdir())


def test_the_first_of_racing_writers_wins(tmp_path):
    cache = PieceCache(tmp_path / "c")
    cache.store("ab" * 32, write_bytes(b"first"), {})
    cache.store("ab" * 32, write_bytes(b"second"), {})
    assert cache.load("ab" * 32, lambda data: data) == b"first"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "meta"])
def test_a_damaged_entry_is_reported_and_removed(tmp_path, caplog, damage):
    cache = PieceCache(tmp_path / "c")
    cache.store("ab" * 32, write_bytes(b"artifact" * 100), {})
    entry = next((tmp_path / "c").glob(f"??/*/{ARTIFACT}")).parent
    if damage == "truncate":
        (entry / ARTIFACT).write_bytes(b"arti")
    elif damage == "garbage":
        (entry / ARTIFACT).write_bytes(b"x" * 800)
    else:
        (entry / "meta.json").write_text("{")
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        assert cache.load("ab" * 32, lambda data: data) is None
    assert "damaged" in caplog.text and not entry.exists()


def test_a_loader_failure_counts_as_damage(tmp_path):
    cache = PieceCache(tmp_path / "c")
    cache.store("ab" * 32, write_bytes(b"artifact"), {})

    def broken(path: Path):
        raise EOFError("unpickling stopped")

    assert cache.load("ab" * 32, broken) is None
    assert cache.info().entries == 0


def test_group_writable_directory_is_refused_with_the_fix(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o775)
    # not fxsplit's: no advice to change its permissions, only to name another
    with pytest.raises(UnsafeCacheDirError, match=r"writable by group or others \(mode 775\)") as refused:
        PieceCache(root)
    assert "chmod" not in str(refused.value) and "--dir" in str(refused.value)
    assert not (root / MARKER).exists()
    ours = tmp_path / "ours"
    PieceCache(ours)
    ours.chmod(0o775)  # fxsplit's own cache, opened up since
    with pytest.raises(UnsafeCacheDirError, match=r"run `chmod go-w .*ours` \(fxsplit made it\)"):
        PieceCache(ours)


def test_a_directory_that_is_not_a_cache_is_named_so_before_its_permissions(tmp_path):
    shared = tmp_path / "tmp"
    shared.mkdir()
    (shared / "someone-elses.txt").write_text("x")
    shared.chmod(0o1777)  # as /tmp is
    with pytest.raises(NotACacheDirError, match="is not an fxsplit cache"):
        PieceCache(shared, create=False)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the directory away")
def test_directory_of_another_user_is_refused(tmp_path):
    root = tmp_path / "theirs"
    root.mkdir(mode=0o700)
    os.chown(root, 12345, 12345)
    with pytest.raises(UnsafeCacheDirError, match="belongs to uid 12345"):
        PieceCache(root)


def test_least_recently_used_entries_are_evicted_past_the_limit(tmp_path):
    cache = PieceCache(tmp_path / "c", max_bytes=10_000)
    for i, key in enumerate(("aa" * 32, "bb" * 32, "cc" * 32)):
        cache.store(key, write_bytes(b"x" * 3000), {})
        entry = next((tmp_path / "c").glob(f"??/{key}"))
        os.utime(entry, (time.time() - 100 + i, time.time() - 100 + i))
    cache.load("aa" * 32, lambda data: data)  # the oldest, used again: now the newest
    cache.store("dd" * 32, write_bytes(b"x" * 3000), {})
    kept = {entry.name for entry, _, _ in cache.entries()}
    assert kept == {"aa" * 32, "cc" * 32, "dd" * 32}
    assert cache.info().bytes <= 10_000


def test_the_compilers_files_count_towards_the_limit_as_one_entry(tmp_path):
    cache = PieceCache(tmp_path / "c", max_bytes=10_000)
    (cache.compiler_files() / "kernel.so").write_bytes(b"k" * 4000)
    os.utime(tmp_path / "c" / COMPILER_FILES, (time.time() - 100, time.time() - 100))
    cache.store("aa" * 32, write_bytes(b"x" * 3000), {})
    assert cache.info().entries == 1 and cache.info().bytes > 7000  # the piece and the compiler's files
    cache.store("bb" * 32, write_bytes(b"x" * 3000), {})  # over the limit: the least recently used goes
    assert not (tmp_path / "c" / COMPILER_FILES).exists() and cache.info().entries == 2


def test_the_cpu_probes_answers_are_kept_with_the_compilers_files(tmp_path, monkeypatch):
    from torch._inductor.cpu_vec_isa import VecISA

    probed = []
    monkeypatch.setattr(VecISA, "_probe_load", lambda isa, library: probed.append(library) or True)
    with PieceCache(tmp_path / "c").compiler_context() as directory:
        assert VecISA._probe_load(None, str(directory / "isa.so"))
    assert len(probed) == 1 and not list((tmp_path / "c" / "tmp").iterdir())  # nothing left staged
    with PieceCache(tmp_path / "c").compiler_context():  # a later process: answered from the file
        assert VecISA._probe_load(None, "/elsewhere/isa.so")
    assert len(probed) == 1
    (tmp_path / "c" / COMPILER_FILES / ISA_PROBES).write_text("{damaged")
    with PieceCache(tmp_path / "c").compiler_context():  # a damaged file: probed again, and kept again
        assert VecISA._probe_load(None, "/elsewhere/isa.so")
    assert len(probed) == 2
    assert list(json.loads((tmp_path / "c" / COMPILER_FILES / ISA_PROBES).read_text()).values()) == [{"isa.so": True}]


def test_processes_probing_at_once_share_each_answer_as_it_is_learnt(tmp_path, monkeypatch):
    from torch._inductor.cpu_vec_isa import VecISA

    probed = []
    monkeypatch.setattr(VecISA, "_probe_load", lambda isa, library: probed.append(library) or True)
    probes = tmp_path / "c" / COMPILER_FILES / ISA_PROBES
    with PieceCache(tmp_path / "c").compiler_context() as directory:
        assert VecISA._probe_load(None, str(directory / "mine.so"))
        assert json.loads(probes.read_text()) == {_compat.isa_probe_machine(): {"mine.so": True}}  # at once
        # another process (a worker's start-up) learns an answer while this block is open
        probes.write_text(json.dumps({_compat.isa_probe_machine(): {"mine.so": True, "theirs.so": False}}))
        assert VecISA._probe_load(None, str(directory / "theirs.so")) is False
    assert probed == [str(directory / "mine.so")]


def test_clear_empties_it(tmp_path):
    cache = PieceCache(tmp_path / "c")
    cache.store("ab" * 32, write_bytes(b"a"), {})
    assert cache.clear() == 1 and cache.info().entries == 0


def test_default_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FXSPLIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "fxsplit"
    monkeypatch.setenv("FXSPLIT_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("FXSPLIT_DISABLE_CACHE", "1")
    assert default_cache_dir() is None


def run_worker(cache_dir: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(cache_dir), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_cold_then_warm_moved_and_corrupted_in_fresh_processes(tmp_path):
    cache_dir = tmp_path / "cache"
    cold = run_worker(cache_dir)
    assert cold["misses"] == cold["compiler_calls"] == 2 and cold["hits"] == 0

    warm = run_worker(cache_dir)
    assert warm["output"] == cold["output"]
    assert (warm["hits"], warm["misses"], warm["compiler_calls"]) == (2, 0, 0)

    moved = tmp_path / "elsewhere"
    shutil.move(cache_dir, moved)
    relocated = run_worker(moved)
    assert (relocated["hits"], relocated["misses"]) == (2, 0)

    artifact = next(moved.glob(f"??/*/{ARTIFACT}"))
    artifact.write_bytes(artifact.read_bytes()[:100])
    repaired = run_worker(moved)
    assert repaired["output"] == cold["output"]
    assert (repaired["hits"], repaired["misses"]) == (1, 1) and "damaged" in repaired["stderr"]
    assert (run_worker(moved)["hits"], PieceCache(moved).info().entries) == (2, 2)


def test_two_processes_filling_one_empty_cache(tmp_path):
    cache_dir = tmp_path / "cache"
    command = [sys.executable, str(WORKER), str(cache_dir)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1])["output"])
    assert outputs[0] == outputs[1]
    assert PieceCache(cache_dir).info().entries == 2
    assert (run_worker(cache_dir)["hits"]) == 2


def test_a_warm_start_needs_nothing_but_the_cache_directory(tmp_path):
    # as in a fresh container: Inductor's own cache is empty at every start
    def fresh_inductor_cache(name: str) -> dict[str, str]:
        return {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / name)}

    def kernel_libraries() -> set[Path]:
        return set(tmp_path.rglob("*.so"))

    cache_dir = tmp_path / "cache"
    cold = run_worker(cache_dir, env=fresh_inductor_cache("inductor-cold"))
    built = kernel_libraries()
    assert built and all(cache_dir in path.parents for path in built)
    warm = run_worker(cache_dir, env=fresh_inductor_cache("inductor-warm"))
    assert (warm["hits"], warm["compiler_calls"], warm["output"]) == (2, 0, cold["output"])
    assert kernel_libraries() == built  # every kernel found in the cache, none rebuilt


# The cache removes nothing that is not its own


def test_a_new_cache_is_marked_as_fxsplits_and_tagged_for_backup_tools(tmp_path):
    PieceCache(tmp_path / "c")
    assert (tmp_path / "c" / MARKER).is_file()
    assert (tmp_path / "c" / CACHEDIR_TAG).read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_a_directory_holding_other_files_is_never_adopted(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NotACacheDirError, match="is not an fxsplit cache"):
        PieceCache(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written either


def test_clear_and_eviction_remove_only_fxsplits_entries(tmp_path):
    cache = PieceCache(tmp_path / "c", max_bytes=5000)
    stray = tmp_path / "c" / "README.user"
    stray.write_text("put here by someone")
    (tmp_path / "c" / "ab").mkdir()
    (tmp_path / "c" / "ab" / "not-a-key").write_text("also someone's")
    for key in ("ab" * 32, "cd" * 32):
        cache.store(key, write_bytes(b"x" * 3000), {})  # the second store evicts the first
    assert {entry.name for entry, _, _ in cache.entries()} == {"cd" * 32}
    (cache.compiler_files() / "kernel.so").write_bytes(b"k")
    assert cache.clear() == 1
    left = sorted(str(p.relative_to(tmp_path / "c")) for p in (tmp_path / "c").rglob("*"))
    assert left == [CACHEDIR_TAG, MARKER, "README.user", "ab", "ab/not-a-key"]


def test_a_query_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    for absent in (tmp_path / "absent", tmp_path / "empty"):
        with pytest.raises(FileNotFoundError, match="no fxsplit cache"):
            PieceCache(absent, create=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty"]
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(NotACacheDirError):
        PieceCache(tmp_path / "empty", create=False)


def test_a_cache_written_before_caches_were_marked_is_still_one(tmp_path):
    root = tmp_path / "old"
    (root / "ab" / ("ab" * 32)).mkdir(parents=True)
    (root / "ab" / ("ab" * 32) / ARTIFACT).write_bytes(b"a")
    (root / "inductor").mkdir()
    assert PieceCache(root, create=False).info().entries == 1
    PieceCache(root)
    assert (root / MARKER).is_file()
