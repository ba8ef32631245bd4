"""The compile report and the progress indicator."""

from __future__ import annotations

import io

from fxsplit.compilation.report import CompileReport, PieceRow, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_and_ends_its_line():
    terminal = Terminal()
    progress = Progress(3, terminal)
    for name in ("submod_0", "submod_2", "submod_4"):
        progress.step(name)
    progress.close()
    out = terminal.getvalue()
    assert "\rfxsplit: compiling 3/3 submod_4" in out and out.endswith("\n")


def test_progress_is_silent_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress(3, stream)
    progress.step("submod_0")
    progress.close()
    assert stream.getvalue() == ""


def test_report_table_marks_shared_and_splitting_pieces():
    report = CompileReport(
        compiler="inductor",
        pieces=3,
        compute_pieces=2,
        compiler_calls=1,
        rows=[
            PieceRow("submod_0", "compute", 10, "abc", None, 1.5),
            PieceRow("submod_1", "splitting", 4),
            PieceRow("submod_2", "compute", 10, "abc", "submod_0"),
        ],
    )
    text = report.format()
    assert "3 pieces (2 compute, 1 sharing a compiled twin), 1 inductor compiler calls" in text
    lines = text.splitlines()
    assert lines[2].split()[-1] == "1.50s" and lines[4].split()[-1] == "submod_0"
    assert [r.compiled for r in report.rows] == [True, False, False]


def test_progress_names_the_trace_it_followed():
    terminal = Terminal()
    progress = Progress(2, terminal, prefix="Dynamo traced the model in 18.1 s; ")
    progress.step("submod_0")
    assert "\rfxsplit: Dynamo traced the model in 18.1 s; compiling 1/2 submod_0" in terminal.getvalue()


def test_the_report_says_what_the_caller_waited_for():
    report = CompileReport(
        compiler="inductor", trace_seconds=18.0, probe_seconds=5.0, split_seconds=0.5, compile_seconds=20.0
    )
    report.first_call_seconds = 1.5
    text = report.format()
    assert (
        "waited: Dynamo's trace 18.00 s, Inductor's CPU probe 5.00 s (once per process, gcc builds when cold), "
        "split and compile 20.50 s, first run 1.50 s; 40.00 s to the end of the first call"
    ) in text
    assert "hash: what the piece computes" in text
    combined = CompileReport.combine([report, CompileReport(trace_seconds=2.0)], "inductor")
    assert combined.trace_seconds == 20.0 and combined.probe_seconds == 5.0
