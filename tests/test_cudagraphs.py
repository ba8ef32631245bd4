"""CUDA graphs per compute piece: the padding and dispatch rules, static buffers,
capture order, the shared pool and the gc policy, driven on CPU by a stand-in for
CUDA's graphs; the clear error without a CUDA device; and, where a GPU is there, the
real thing."""

from __future__ import annotations

import gc

import pytest
import torch

import fxsplit
from fxsplit.runtime import cudagraphs
from fxsplit.runtime.cudagraphs import padded
from fxsplit.tools import models

ATTENTION = models.ATTENTION_OP_NAME
SIZES = (2, 4, 8)


class StandIn:
    """CUDA's graphs as a test sees them: a capture runs the piece and keeps it and its
    outputs; a replay runs it again and writes the results into the captured outputs,
    as a graph writes into its pool. It records pools, captures and the gc policy."""

    def __init__(self) -> None:
        self.pools: list[object] = []
        self.captures: list[tuple[object, bool]] = []  # (pool, gc.collect was quiet)
        self.replays = 0

    def new_pool(self) -> object:
        self.pools.append(object())
        return self.pools[-1]

    def new_graph(self) -> dict:
        return {}

    def capture(self, graph, pool, run):
        self.captures.append((pool, gc.collect() == 0 and gc.collect is not _collect))
        graph["run"], graph["out"] = run, run()
        return graph["out"]

    def replay(self, graph) -> None:
        self.replays += 1
        fresh, kept = graph["run"](), graph["out"]
        for new, old in zip(
            fresh if isinstance(fresh, tuple) else (fresh,), kept if isinstance(kept, tuple) else (kept,)
        ):
            old.copy_(new)

    def synchronize(self) -> None:
        pass


_collect = gc.collect


def captured_model(layers=2, sizes=SIZES, debug=False, dump_dir=None):
    """The built-in model through the backend, its pieces captured on the stand-in."""
    torch.manual_seed(0)
    model, _ = models.build(layers)
    backend = fxsplit.PiecewiseBackend([ATTENTION], compiler="eager", cache_dir=None, dump_dir=dump_dir)
    device = StandIn()
    backend._graph_device, backend.cudagraph_sizes, backend.cudagraph_debug = device, sizes, debug
    torch._dynamo.reset()
    return model, torch.compile(model, backend=backend, dynamic=True), device


CAPTURED: list[cudagraphs.CapturedPiece] = []  # the pieces of the last capture


@pytest.fixture(autouse=True)
def record_pieces(monkeypatch):
    CAPTURED.clear()
    capture_all = cudagraphs.capture_all

    def recording(pieces, sizes, device):
        CAPTURED.extend(pieces)
        return capture_all(pieces, sizes, device)

    monkeypatch.setattr("fxsplit.runtime.cudagraphs.capture_all", recording)


def test_a_size_is_padded_to_the_next_capture_size_and_none_above_the_largest():
    assert [padded(n, SIZES) for n in (1, 2, 3, 4, 5, 8, 9)] == [2, 2, 4, 4, 8, 8, None]


def test_outputs_equal_eager_at_capture_sizes_between_them_and_above():
    model, compiled, device = captured_model()
    with torch.no_grad():
        for tokens in (16, 2, 3, 4, 7, 8, 12, 5):
            ids, positions = models.example_inputs(model.config, tokens)
            torch.testing.assert_close(compiled(ids, positions), model(ids, positions), rtol=1e-5, atol=1e-5)
    pieces = CAPTURED
    assert len(pieces) == 3 and all(sorted(p.graphs) == list(SIZES) for p in pieces)
    # 2, 3, 4, 7, 8, 5 replay (3 pieces each); 16 and 12 run without graphs
    assert [(p.replays, p.eager_calls) for p in pieces] == [(6, 2)] * 3 and device.replays == 18


def test_capture_runs_largest_first_in_one_pool_and_quiets_gc_after_the_first():
    _, compiled, device = captured_model()
    with torch.no_grad():
        ids, positions = models.example_inputs(models.build(2)[0].config, 16)
        compiled(ids, positions)  # the first call compiles and captures
    assert len(device.pools) == 1 and {pool for pool, _ in device.captures} == {device.pools[0]}
    assert [quiet for _, quiet in device.captures] == [False] + [True] * 8  # 3 sizes x 3 pieces
    assert [list(p.graphs) for p in CAPTURED] == [[8, 4, 2]] * 3  # captured in this order
    assert gc.collect is _collect  # restored after the capture


def test_a_dump_reads_the_pieces_under_their_graphs(tmp_path):
    model, compiled, _ = captured_model(dump_dir=tmp_path)
    with torch.no_grad():
        compiled(*models.example_inputs(model.config, 4))
    assert (tmp_path / "graph_0" / "report.json").exists() and len(CAPTURED) == 3


def test_the_models_output_survives_the_next_replay():
    model, compiled, _ = captured_model()
    with torch.no_grad():
        first = compiled(*models.example_inputs(model.config, 3))
        kept = first.clone()
        compiled(*models.example_inputs(model.config, 3))  # replays the same graphs
        other = compiled(*models.example_inputs(model.config, 4))
    torch.testing.assert_close(first, kept, rtol=0, atol=0)
    assert other.data_ptr() != first.data_ptr()


def test_debug_mode_finds_a_weight_that_moved():
    model, compiled, _ = captured_model(debug=True)
    with torch.no_grad():
        compiled(*models.example_inputs(model.config, 4))
        piece = next(p for p in CAPTURED if p.weights)
        args = list(piece.graphs[4][1])  # inputs as captured: the weights where they were
        piece(*args)
        index = next(iter(piece.weights))
        args[index] = args[index].clone()  # the same weight, somewhere else
        with pytest.raises(RuntimeError, match=r"input \d+ of submod_\d \(a weight\) moved since its CUDA graph"):
            piece(*args)


def test_without_a_cuda_device_cudagraphs_are_refused_with_the_fix():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(RuntimeError, match="needs a CUDA device.*leave cudagraph=None on CPU"):
        fxsplit.PiecewiseBackend(cudagraph="piecewise", cudagraph_sizes=[1, 2])
    with pytest.raises(ValueError, match="'breakable' capture is not built yet"):
        fxsplit.PiecewiseBackend(cudagraph="breakable", cudagraph_sizes=[1, 2])


def test_a_cudagraph_option_without_the_mode_is_refused_as_doing_nothing():
    with pytest.raises(ValueError, match=r"cudagraph_sizes=\[2, 4\] does nothing without cudagraph='piecewise'"):
        fxsplit.PiecewiseBackend(cudagraph_sizes=[4, 2])
    with pytest.raises(ValueError, match="cudagraph_debug=True does nothing without cudagraph='piecewise'"):
        fxsplit.PiecewiseBackend(cudagraph_debug=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_outputs_equal_eager_and_replays_do_not_allocate():
    torch.manual_seed(0)
    model, _ = models.build(2)
    model = model.cuda()
    backend = fxsplit.PiecewiseBackend([ATTENTION], cudagraph="piecewise", cudagraph_sizes=SIZES, cache_dir=None)
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        for tokens in (16, 2, 3, 8, 12):
            ids, positions = (t.cuda() for t in models.example_inputs(model.config, tokens))
            torch.testing.assert_close(compiled(ids, positions), model(ids, positions), rtol=1e-3, atol=1e-3)
        ids, positions = (t.cuda() for t in models.example_inputs(model.config, 4))
        compiled(ids, positions)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        for _ in range(100):
            compiled(ids, positions)
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() <= before + 2**20  # outputs copied out: at most one kept
