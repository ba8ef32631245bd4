"""Inductor's CPU instruction-set probe: run up front, and answered from a cache."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import torch

from . import lookup


def isa_probe_machine() -> str | None:
    """What the answers of Inductor's CPU instruction-set probe depend on, beyond the
    probe's own library (its name holds the code, the flags and the compiler): the
    CPU's instruction sets, the torch and the Python that load it. None where this
    torch has no such probe."""
    checker = lookup.private("torch._inductor.cpu_vec_isa", "x86_isa_checker")
    if checker is None or lookup.private("torch._inductor.cpu_vec_isa", "VecISA") is None:
        return None
    return json.dumps([platform.machine(), sorted(checker()), torch.__version__, sys.executable])


def probe_cpu() -> None:
    """Run Inductor's CPU instruction-set probe now, as the first CPU compile of the
    process would: each instruction set the CPU reports in a thread of its own, since
    each is a chain of compiler runs and loads in child processes (10 here, about 17 s
    one after another on a cold cache). Without torch's per-set checks it runs the
    probe as torch does; without a probe at all it does nothing."""
    valid_vec_isa_list = lookup.private("torch._inductor.cpu_vec_isa", "valid_vec_isa_list")
    if valid_vec_isa_list is None:
        return
    checker = lookup.private("torch._inductor.cpu_vec_isa", "x86_isa_checker")
    candidates = lookup.private("torch._inductor.cpu_vec_isa", "supported_vec_isa_list")
    if checker is not None and candidates is not None:
        reported = set(checker())
        # the sets valid_vec_isa_list would check: those whose every flag the CPU reports
        threads = [
            threading.Thread(target=bool, args=(isa,), name="fxsplit-cpu-probe", daemon=True)
            for isa in candidates
            if reported.issuperset(str(isa).split())
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    valid_vec_isa_list()


_probe_lock = threading.Lock()


_probe_answers: list[MutableMapping[str, bool]] = []  # of every block open, in any thread


_probe: list[Callable[[Any, str], bool]] = []  # torch's own, while it is replaced


@contextlib.contextmanager
def isa_probe_answers(answers: MutableMapping[str, bool]) -> Iterator[None]:
    """Inductor's CPU instruction-set probe answered from ``answers`` in the block, and
    what it had to probe added to them.

    The first CPU compile or kernel load of a process probes each instruction set: it
    builds a small library (kept in Inductor's cache) and loads it in a child process,
    about 0.2 s each and 2 s on this machine, which a warm start pays in full. The
    answer for one library (keyed by its file name) on one machine
    (:func:`isa_probe_machine`) does not change, so it is kept rather than probed
    again; the build still runs or is found, so a compiler that rejects the flags is
    still seen. Without torch's probe, the block runs as it is.
    """
    vec_isa = lookup.private("torch._inductor.cpu_vec_isa", "VecISA")
    if getattr(vec_isa, "_probe_load", None) is None:
        yield
        return
    with _probe_lock:
        if not _probe_answers:
            _probe.append(vec_isa._probe_load)
            vec_isa._probe_load = _answered
        _probe_answers.append(answers)
    try:
        yield
    finally:
        with _probe_lock:
            _probe_answers.remove(answers)
            if not _probe_answers:
                vec_isa._probe_load = _probe.pop()


def _answered(isa: Any, library: str) -> bool:
    name = os.path.basename(library)
    with _probe_lock:
        known = next((answers[name] for answers in _probe_answers if name in answers), None)
        probe = _probe[0]
    if known is not None:
        return known
    answer = bool(probe(isa, library))
    with _probe_lock:
        for answers in _probe_answers:
            answers[name] = answer
    return answer
