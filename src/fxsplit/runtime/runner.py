"""Running compiled pieces: each compute piece's runner dispatches on size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .. import _compat
from .layout import InputLayouts
from .sizes import SizeKey, SizeTable

# where a piece's inputs hold the size it dispatches on: (input, dim), dim None for a SymInt input
SizeAt = tuple[int, int | None]


class Background(Protocol):
    """A general version compiling elsewhere while the piece runs as its own code."""

    def done(self) -> bool:
        """Whether :meth:`result` would return at once."""
        ...

    def result(self) -> Callable[..., Any] | None:
        """The compiled version, waiting for it; None: the piece keeps running as its code."""
        ...


class PieceRunner:
    """Runs one compiled compute piece (shared by its twins).

    Dispatches on the size found at ``size_at``: a size that ``compile_sizes`` holds
    (:class:`~fxsplit.runtime.sizes.SizeTable`: a size, or a range holding it) runs
    the version compiled for that entry (in ``specialised``, or made by
    ``specialise(entry)`` on first use and kept), any other size the general version. Inputs whose layout the
    compiled code refuses are copied into the layout it expects (see
    :mod:`fxsplit.runtime.layout`). After its first call through torch's wrappers, a
    compiled version is entered as directly as torch allows
    (:func:`fxsplit._compat.direct_entry`), so the runner must run outside Dynamo, as
    a backend's output and fxsplit's stitching do. Called as :meth:`returning`, for a
    piece whose outputs the model returns, that entry also marks the outputs'
    dynamic dims, as torch's wrapper does.

    A general version compiling in the background (:meth:`defer`) takes over from the
    piece's own code on the first call after it is done, or at :meth:`wait`.

    A runner pickles with its compiled versions (which need a pickler that can save
    them) but without ``specialise``: an unpickled runner compiles nothing, and runs a
    size it has no version for with the general one. A runner still waiting for its
    general version does not pickle: :meth:`wait` first.
    """

    def __init__(
        self,
        name: str,
        general: Callable[..., Any],
        size_at: SizeAt | None,
        compile_sizes: SizeTable,
        specialise: Callable[[SizeKey], Callable[..., Any]],
        layouts: InputLayouts,
    ) -> None:
        self.name = name
        self.general = general
        self.size_at = size_at
        self.compile_sizes = compile_sizes if size_at is not None else SizeTable()
        self._dispatches = bool(self.compile_sizes)  # read on every call: a plain bool, no method call
        self.specialised: dict[SizeKey, Callable[..., Any]] = {}
        self._specialise = specialise
        self.layouts = layouts
        self.general_calls = 0
        self.specialised_calls = 0
        # each version's direct entry, made after its first call (see _compat.direct_entry),
        # without and with the marks on its outputs
        self._entries: dict[tuple[SizeKey | None, bool], Callable[..., Any]] = {}
        self.background: Background | None = None
        self.as_code = False  # the background gave no version: the piece runs as its code for good

    def __getstate__(self) -> dict[str, Any]:
        if self.background is not None:
            raise RuntimeError(f"fxsplit: {self.name} is still compiling in the background; wait() for it first")
        return {k: v for k, v in self.__dict__.items() if k not in ("_specialise", "_entries")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.background, self.as_code = None, False
        self.__dict__.update(state)
        self._specialise = lambda size: self.general
        self._entries = {}

    def defer(self, code: Callable[..., Any], background: Background) -> None:
        """Run the piece as ``code`` (its own Python code) until ``background`` is done."""
        self.general, self.background = code, background

    def wait(self) -> bool:
        """Wait for the general version compiling in the background, and run it from now
        on; whether the general version is compiled (False: the piece runs as its code)."""
        background = self.background
        if background is None:
            return not self.as_code
        self.background = None
        compiled = background.result()
        if compiled is None:
            self.as_code = True
            return False
        code, self.general = self.general, compiled
        # a size whose version fell back to the general one, while that was the piece's code
        for size, version in self.specialised.items():
            if version is code:
                self.specialised[size] = compiled
        self._entries.clear()
        return True

    def _version(self, key: SizeKey | None) -> Callable[..., Any]:
        """The version that runs ``key`` (None: the general one), compiled now if it is not yet."""
        if key is None:
            return self.general
        version = self.specialised.get(key)
        if version is None:
            version = self.specialised[key] = self._specialise(key)
        return version

    def __call__(self, *args: Any) -> Any:
        return self._run(args, marks=False)

    def returning(self, *args: Any) -> Any:
        """A call for a piece whose outputs the model returns: they keep the marks of
        their dynamic dims that torch's wrapper puts on them, which a later Dynamo
        graph that reads them needs."""
        return self._run(args, marks=True)

    def _run(self, args: tuple[Any, ...], marks: bool) -> Any:
        if self.background is not None and self.background.done():
            self.wait()
        if self.layouts.watched:
            args = tuple(self.layouts.apply(args))
        key = None
        if self._dispatches:
            index, dim = self.size_at  # type: ignore[misc]
            key = self.compile_sizes.lookup(args[index] if dim is None else args[index].shape[dim])
        if key is None:
            self.general_calls += 1
        else:
            self.specialised_calls += 1
        entry = self._entries.get((key, marks))
        runnable = entry if entry is not None else self._version(key)
        try:
            result = runnable(*args)
        except AssertionError:
            repaired = self.layouts.repair(args)
            if repaired is None:
                raise
            result = runnable(*repaired)
        if entry is None:
            self._entries[key, marks] = _compat.direct_entry(runnable, mark_outputs=marks)
        return result
