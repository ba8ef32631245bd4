"""Compute pieces replayed as CUDA graphs, one graph per capture size.

Between splitting ops, a decoder's compute treats tokens independently, so a call of
``n`` tokens can run the graph captured for the next capture size ``N >= n``: the
caller's inputs are copied into the first ``n`` rows of static buffers that fxsplit
owns, the graph is replayed, and the outputs' first ``n`` rows are handed on. Sizes
above the largest capture size run the compiled piece without a graph. Splitting ops
run eagerly, at the real size, between the pieces.

Capture follows vLLM's rules: every graph of a model in one memory pool, the largest
size first so that smaller graphs reuse its memory, a warm-up run before each
capture, and Python's ``gc.collect`` and ``torch.cuda.empty_cache`` turned into
no-ops while capturing every graph after the first (both would slow capture down
and neither can free what the pool holds). A piece's weights (parameters) are read
in place and never copied; with ``debug``, each replay checks that they have not
moved.

CUDA itself is behind :class:`GraphDevice`, so that tests can drive the capture
order, the pool, the gc policy and the padding with a stand-in.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import sympy
import torch

from .dynamic import token_dim
from .signature import Signature, SizeSpec, TensorSpec

log = logging.getLogger(__name__)

MODES = ("piecewise",)


class GraphDevice(Protocol):
    """What capturing and replaying graphs needs from the device."""

    def new_pool(self) -> Any: ...

    def new_graph(self) -> Any: ...

    def capture(self, graph: Any, pool: Any, run: Callable[[], Any]) -> Any:
        """Record ``run()`` into ``graph``, its memory from ``pool``; returns its outputs,
        which each replay of the graph writes again."""
        ...

    def replay(self, graph: Any) -> None: ...

    def synchronize(self) -> None: ...


class CudaDevice:
    """:class:`GraphDevice` on CUDA, through torch's public CUDA-graph API."""

    def new_pool(self) -> Any:
        return torch.cuda.graph_pool_handle()

    def new_graph(self) -> Any:
        return torch.cuda.CUDAGraph()

    def capture(self, graph: Any, pool: Any, run: Callable[[], Any]) -> Any:
        with torch.cuda.graph(graph, pool=pool):
            return run()

    def replay(self, graph: Any) -> None:
        graph.replay()

    def synchronize(self) -> None:
        torch.cuda.synchronize()


def check_mode(mode: str | None, sizes: Iterable[int], debug: bool = False) -> tuple[int, ...]:
    """The capture sizes, sorted, for ``cudagraph=mode``; a clear error where CUDA
    graphs cannot run (no CUDA device), the mode is not one fxsplit has, or a CUDA-graph
    option is given without a mode (it would do nothing)."""
    capture_sizes = tuple(sorted({int(s) for s in sizes}))
    if mode is None:
        given = [f"cudagraph_sizes={list(capture_sizes)}"] if capture_sizes else []
        given += ["cudagraph_debug=True"] if debug else []
        if given:
            raise ValueError(
                f"{' and '.join(given)} does nothing without cudagraph='piecewise' (CUDA graphs are off by "
                f"default): pass cudagraph='piecewise' on a CUDA device, or leave {' and '.join(given)} out"
            )
        return capture_sizes
    if mode not in MODES:
        raise ValueError(
            f"cudagraph={mode!r}: fxsplit captures CUDA graphs per piece (cudagraph='piecewise'); "
            f"'breakable' capture is not built yet"
        )
    if not torch.cuda.is_available():
        raise RuntimeError(
            "cudagraph='piecewise' needs a CUDA device, and torch.cuda.is_available() is False here; "
            "leave cudagraph=None on CPU"
        )
    if not capture_sizes or capture_sizes[0] < 1:
        raise ValueError(f"cudagraph_sizes: give the token counts to capture, each at least 1, got {list(sizes)!r}")
    return capture_sizes


def padded(size: int, capture_sizes: Sequence[int]) -> int | None:
    """The capture size that runs ``size`` tokens (the smallest one at least as big),
    or None above the largest: that call runs without a graph."""
    at = bisect_left(capture_sizes, size)
    return capture_sizes[at] if at < len(capture_sizes) else None


@contextlib.contextmanager
def quiet_memory(quiet: bool) -> Iterator[None]:
    """``gc.collect`` and ``torch.cuda.empty_cache`` as no-ops in the block, where ``quiet``."""
    if not quiet:
        yield
        return
    collect, empty_cache = gc.collect, torch.cuda.empty_cache
    gc.collect = lambda generation=2: 0
    torch.cuda.empty_cache = lambda: None
    try:
        yield
    finally:
        gc.collect, torch.cuda.empty_cache = collect, empty_cache


class CapturedPiece:
    """One compute piece (``run``) as a CUDA graph per capture size.

    ``signature`` describes its inputs, ``symbol`` names the token count among their
    sizes, ``weights`` maps input positions to the tensors read in place (parameters:
    captured at their address, never copied), ``output_dims`` gives each output's
    token dimension (None: an output without one). With ``keep_outputs``, outputs are
    copied out of the pool (the piece's outputs reach the model's output, which the
    next replay would overwrite); otherwise they are views that the next piece reads
    before anything replays this graph again. A piece whose shapes hold another
    dynamic size, or the token count other than as a whole dimension, cannot be
    captured: :meth:`capturable` says why, and it then runs as it is.
    """

    def __init__(
        self,
        name: str,
        run: Callable[..., Any],
        signature: Signature,
        symbol: str,
        weights: dict[int, torch.Tensor],
        output_dims: Sequence[int | None],
        device: GraphDevice,
        keep_outputs: bool = False,
        debug: bool = False,
    ) -> None:
        self.name = name
        self.run = run
        self.signature = signature
        self.symbol = symbol
        self.weights = weights
        self.output_dims = tuple(output_dims)
        self.device = device
        self.keep_outputs = keep_outputs
        self.debug = debug
        self.capture_sizes: tuple[int, ...] = ()
        self.graphs: dict[int, tuple[Any, list[Any], Any]] = {}  # size -> (graph, static inputs, outputs)
        self.replays = 0
        self.eager_calls = 0
        self._single = False
        self._addresses = {index: w.data_ptr() for index, w in weights.items()}
        self._token_dims = self._input_token_dims()

    def capturable(self) -> str | None:
        """None where the piece can be captured, else why not."""
        return self._token_dims if isinstance(self._token_dims, str) else None

    def _input_token_dims(self) -> list[int | None] | str:
        dims: list[int | None] = []
        for index, spec in enumerate(self.signature.inputs):
            if isinstance(spec, SizeSpec) or index in self.weights:
                dims.append(None)
                continue
            found = None
            for dim, expr in enumerate(spec.size):
                free = {s.name for s in expr.free_symbols}
                if free - {self.symbol}:
                    return f"input {index} has another dynamic size ({expr})"
                if free and not (isinstance(expr, sympy.Symbol) and expr.name == self.symbol):
                    return f"input {index} holds the token count as {expr}, not as a dimension"
                if free:
                    found = dim
            dims.append(found)
        return dims

    def _static_inputs(self, size: int) -> list[Any]:
        """Buffers of each input's layout at ``size`` tokens; weights as they are."""
        values = {s: size if s.name == self.symbol else hint for s, hint in self.signature.hints}
        inputs: list[Any] = []
        for index, spec in enumerate(self.signature.inputs):
            if index in self.weights:
                inputs.append(self.weights[index])
            elif isinstance(spec, SizeSpec):
                inputs.append(int(spec.expr.subs(values)))
            else:
                assert isinstance(spec, TensorSpec)
                shape = [int(e.subs(values)) for e in spec.size]
                stride = [int(e.subs(values)) for e in spec.stride]
                inputs.append(torch.empty_strided(shape, stride, dtype=spec.dtype, device=spec.device).zero_())
        return inputs

    def capture(self, size: int, pool: Any, quiet: bool) -> None:
        """Warm up, then capture the graph for ``size`` tokens in ``pool``."""
        static = self._static_inputs(size)
        self.run(*static)  # warm-up: lazy initialisation must not happen inside the capture
        self.device.synchronize()
        graph = self.device.new_graph()
        with quiet_memory(quiet):
            outputs = self.device.capture(graph, pool, lambda: self.run(*static))
        self._single = not isinstance(outputs, (tuple, list))
        self.graphs[size] = (graph, static, (outputs,) if self._single else tuple(outputs))
        self.capture_sizes = tuple(sorted(self.graphs))

    def __call__(self, *args: Any) -> Any:
        dims = self._token_dims
        size = _token_count(args, dims) if not isinstance(dims, str) else None
        capture_size = padded(size, self.capture_sizes) if size is not None else None
        if capture_size is None:
            self.eager_calls += 1
            return self.run(*args)
        assert not isinstance(dims, str) and size is not None
        if self.debug:
            self._check_weights(args)
        graph, static, outputs = self.graphs[capture_size]
        for value, buffer, dim in zip(args, static, dims):
            if dim is not None:
                buffer.narrow(dim, 0, size).copy_(value)
            elif isinstance(buffer, torch.Tensor) and buffer is not value:
                buffer.copy_(value)
        self.device.replay(graph)
        self.replays += 1
        handed = [
            out.narrow(dim, 0, size) if dim is not None and isinstance(out, torch.Tensor) else out
            for out, dim in zip(outputs, self.output_dims)
        ]
        if self.keep_outputs:
            handed = [out.clone() if isinstance(out, torch.Tensor) else out for out in handed]
        return handed[0] if self._single else tuple(handed)

    def _check_weights(self, args: Sequence[Any]) -> None:
        for index, address in self._addresses.items():
            if args[index].data_ptr() != address:
                raise RuntimeError(
                    f"fxsplit: input {index} of {self.name} (a weight) moved since its CUDA graph was captured "
                    f"(address {address:#x}, now {args[index].data_ptr():#x}); the graph would read the old "
                    f"memory. Load weights in place (param.data.copy_), or compile again after moving the model"
                )


def _token_count(args: Sequence[Any], dims: Sequence[int | None]) -> int | None:
    for value, dim in zip(args, dims):
        if dim is not None:
            return int(value.shape[dim])
    return None


def capture_all(pieces: Sequence[CapturedPiece], capture_sizes: Sequence[int], device: GraphDevice) -> Any:
    """Capture every capturable piece at every size, in one pool, largest size first;
    returns the pool."""
    pool = device.new_pool()
    capturable = []
    for piece in pieces:
        reason = piece.capturable()
        if reason is None:
            capturable.append(piece)
        else:
            log.info("fxsplit: %s runs without CUDA graphs: %s", piece.name, reason)
    first = True
    for size in sorted(capture_sizes, reverse=True):
        for piece in capturable:
            piece.capture(size, pool, quiet=not first)
            first = False
    device.synchronize()
    return pool


def capture_split(
    split: torch.fx.GraphModule,
    pieces: Sequence[tuple[str, Signature | None, list[Any], torch.fx.GraphModule]],
    symbol: str | None,
    capture_sizes: Sequence[int],
    device: GraphDevice,
    debug: bool = False,
) -> None:
    """Every compute piece of ``split`` captured as CUDA graphs and put in its place,
    each instance with its own weights: ``pieces`` gives each one's name, the
    signature of its inputs (None: they cannot be described, and it runs without
    graphs), its inputs and its graph, whose outputs say where they hold the token
    count ``symbol``."""
    if symbol is None:
        log.warning("fxsplit: the model has no dynamic size to capture CUDA graphs for; it runs without them")
        return
    reaching_output = pieces_reaching_output(split)
    captured = []
    for name, signature, inputs, graph in pieces:
        if signature is None:
            log.info("fxsplit: %s runs without CUDA graphs: its inputs cannot be described", name)
            continue
        outputs = graph.graph.find_nodes(op="output")[0].args[0]
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        captured.append(
            CapturedPiece(
                name,
                split.__dict__[name],
                signature,
                symbol,
                {i: v for i, v in enumerate(inputs) if isinstance(v, torch.nn.Parameter)},
                [token_dim(node, symbol) for node in outputs],
                device,
                keep_outputs=name in reaching_output,
                debug=debug,
            )
        )
    capture_all(captured, capture_sizes, device)
    for piece in captured:
        if piece.graphs:
            split.__dict__[piece.name] = piece


def pieces_reaching_output(split: torch.fx.GraphModule) -> set[str]:
    """The pieces whose outputs the split graph returns (directly or through getitem)."""
    names: set[str] = set()
    for node in split.graph.find_nodes(op="output")[0].all_input_nodes:
        while node.op == "call_function" and node.all_input_nodes:
            node = node.all_input_nodes[0]
        if node.op == "call_module":
            names.add(str(node.target))
    return names
