"""The runtime of a compiled piece: size dispatch and the repair of input layouts."""

from __future__ import annotations

from typing import Any

import torch
from torch._C._dynamo.guards import assert_size_stride

from fxsplit import _compat
from fxsplit.compilation.examples import describe
from fxsplit.runtime.layout import InputLayouts
from fxsplit.runtime.runner import PieceRunner
from fxsplit.runtime.sizes import SizeTable


def symbolic_examples() -> tuple[Any, Any]:
    """The signature of a piece's inputs as Dynamo makes them: ``(s0, x: (s0, 4) contiguous)``."""
    fake_mode, shape_env = _compat.fresh_fake_mode()
    s0 = shape_env.create_symintnode(_compat.new_size_symbol(shape_env, "s0", 5), hint=5)
    with fake_mode:
        x = torch.empty(s0, 4)
    return describe([s0, x]), s0


def strict(size: int, seen: list[int]):
    """A compiled piece in miniature: it checks its input's layout as Inductor's code does."""

    def run(n: int, x: torch.Tensor) -> torch.Tensor:
        assert_size_stride(x, (n, 4), (4, 1))
        seen.append(size)
        return x * 2

    return run


def test_a_refused_layout_is_copied_into_the_expected_one_and_watched():
    examples, _ = symbolic_examples()
    seen: list[int] = []
    runner = PieceRunner(
        "p", strict(0, seen), None, SizeTable(), lambda size: strict(size, seen), InputLayouts(examples)
    )
    transposed = torch.randn(4, 5).t()
    torch.testing.assert_close(runner(5, transposed), transposed * 2)
    assert list(runner.layouts.watched) == [1]
    other = torch.randn(4, 7).t()  # a new size: its expected strides are worked out too
    torch.testing.assert_close(runner(7, other), other * 2)
    assert seen == [0, 0]


def test_an_assertion_that_is_no_layout_problem_is_raised():
    examples, _ = symbolic_examples()

    def failing(n: int, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("something else")

    runner = PieceRunner("p", failing, None, SizeTable(), failing, InputLayouts(examples))
    try:
        runner(5, torch.randn(5, 4))
    except AssertionError as error:
        assert "something else" in str(error)
    else:
        raise AssertionError("the runner swallowed the error")
    assert not runner.layouts.watched


def test_size_dispatch_from_a_symint_input_or_a_tensor_dimension():
    examples, _ = symbolic_examples()
    for size_at in ((0, None), (1, 0)):
        seen: list[int] = []
        made: list[int] = []

        def specialise(size: int, seen: list[int] = seen, made: list[int] = made):
            made.append(size)
            return strict(size, seen)

        runner = PieceRunner("p", strict(0, seen), size_at, SizeTable([8]), specialise, InputLayouts(examples))
        for n in (5, 8, 3, 8):
            runner(n, torch.randn(n, 4))
        assert seen == [0, 8, 0, 8] and made == [8]
        assert (runner.general_calls, runner.specialised_calls) == (2, 2)


def test_a_version_is_called_as_it_is_first_then_through_its_direct_entry(monkeypatch):
    examples, _ = symbolic_examples()
    calls: list[str] = []

    def version(n: int, x: torch.Tensor) -> torch.Tensor:
        calls.append("version")
        return x * 2

    def direct_entry(compiled: Any, mark_outputs: bool) -> Any:
        def entry(*args: Any) -> Any:
            calls.append("marking entry" if mark_outputs else "entry")
            return compiled(*args)

        return entry

    monkeypatch.setattr(_compat, "direct_entry", direct_entry)
    runner = PieceRunner("p", version, (1, 0), SizeTable([8]), lambda size: version, InputLayouts(examples))
    for n in (5, 5, 8, 8):
        runner(n, torch.randn(n, 4))
    # the general version and the one for 8 each make their direct entry after a first plain call
    assert calls == ["version", "entry", "version", "version", "entry", "version"]
    calls.clear()
    for _ in range(2):  # a returning piece's entry is one of its own, which marks the outputs
        runner.returning(5, torch.randn(5, 4))
    runner(5, torch.randn(5, 4))
    assert calls == ["version", "marking entry", "version", "entry", "version"]
    assert (runner.general_calls, runner.specialised_calls) == (5, 2)
