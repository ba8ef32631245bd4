"""Running compiled pieces: each compute piece's runner dispatches on size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


class PieceRunner:
    """Runs one compiled compute piece (shared by its twins), dispatching on size."""

    def __init__(
        self,
        name: str,
        general: Callable[..., Any],
        size_index: int | None,
        compile_sizes: frozenset[int],
        specialise: Callable[[Sequence[Any]], Callable[..., Any]],
    ) -> None:
        self.name = name
        self.general = general
        self.size_index = size_index
        self.compile_sizes = compile_sizes if size_index is not None else frozenset()
        self.specialised: dict[int, Callable[..., Any]] = {}
        self._specialise = specialise
        self.general_calls = 0
        self.specialised_calls = 0

    def __call__(self, *args: Any) -> Any:
        if self.compile_sizes:
            size = args[self.size_index]  # type: ignore[index]
            if size in self.compile_sizes:
                runnable = self.specialised.get(size)
                if runnable is None:
                    runnable = self.specialised[size] = self._specialise(args)
                self.specialised_calls += 1
                return runnable(*args)
        self.general_calls += 1
        return self.general(*args)
