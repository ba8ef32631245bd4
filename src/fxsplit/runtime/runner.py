"""Running compiled pieces: each compute piece's runner dispatches on size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .layout import InputLayouts

# where a piece's inputs hold the size it dispatches on: (input, dim), dim None for a SymInt input
SizeAt = tuple[int, int | None]


class PieceRunner:
    """Runs one compiled compute piece (shared by its twins).

    Dispatches on the size found at ``size_at``: a size in ``compile_sizes`` runs the
    version compiled for it (in ``specialised``, or made by ``specialise(size)`` on
    first use and kept), any other size the general version. Inputs whose layout the
    compiled code refuses are copied into the layout it expects (see
    :mod:`fxsplit.runtime.layout`).

    A runner pickles with its compiled versions (which need a pickler that can save
    them) but without ``specialise``: an unpickled runner compiles nothing, and runs a
    size it has no version for with the general one.
    """

    def __init__(
        self,
        name: str,
        general: Callable[..., Any],
        size_at: SizeAt | None,
        compile_sizes: frozenset[int],
        specialise: Callable[[int], Callable[..., Any]],
        layouts: InputLayouts,
    ) -> None:
        self.name = name
        self.general = general
        self.size_at = size_at
        self.compile_sizes = compile_sizes if size_at is not None else frozenset()
        self.specialised: dict[int, Callable[..., Any]] = {}
        self._specialise = specialise
        self.layouts = layouts
        self.general_calls = 0
        self.specialised_calls = 0

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_specialise"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._specialise = lambda size: self.general

    def __call__(self, *args: Any) -> Any:
        if self.layouts.watched:
            args = tuple(self.layouts.apply(args))
        runnable = self.general
        if self.compile_sizes:
            index, dim = self.size_at  # type: ignore[misc]
            size = args[index] if dim is None else args[index].shape[dim]
            if size in self.compile_sizes:
                runnable = self.specialised.get(size)  # type: ignore[assignment]
                if runnable is None:
                    runnable = self.specialised[size] = self._specialise(size)
                self.specialised_calls += 1
            else:
                self.general_calls += 1
        else:
            self.general_calls += 1
        try:
            return runnable(*args)
        except AssertionError:
            repaired = self.layouts.repair(args)
            if repaired is None:
                raise
            return runnable(*repaired)
