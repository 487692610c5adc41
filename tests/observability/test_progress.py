"""Long-running commands: a bar in a terminal, plain lines elsewhere, never on stdout."""

from __future__ import annotations

import io

from vault.observability.progress import progress


def test_without_a_terminal_progress_is_a_line_per_tenth():
    out = io.StringIO()
    with progress("rewrapping patient keys", total=100, stream=out) as bar:
        for _ in range(100):
            bar.advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "rewrapping patient keys: 0/100"
    assert lines[1] == "rewrapping patient keys: 10/100 (10%)"
    assert lines[10] == "rewrapping patient keys: 100/100 (100%)"
    assert lines[-1] == "rewrapping patient keys: done, 100"
    assert len(lines) == 12


def test_large_steps_still_give_one_line_each_and_unknown_totals_count():
    out = io.StringIO()
    with progress("backup", total=10, stream=out) as bar:
        bar.advance(7)
        bar.advance(3)
    assert out.getvalue().splitlines() == [
        "backup: 0/10",
        "backup: 7/10 (70%)",
        "backup: 10/10 (100%)",
        "backup: done, 10",
    ]
    out = io.StringIO()
    with progress("verify", stream=out, every=2) as bar:
        for _ in range(5):
            bar.advance()
    assert out.getvalue().splitlines() == [
        "verify: started",
        "verify: 2",
        "verify: 4",
        "verify: done, 5",
    ]


def test_in_a_terminal_progress_draws_a_bar():
    out = io.StringIO()
    with progress("restore", total=4, stream=out, terminal=True) as bar:
        bar.advance(4)
    drawn = out.getvalue()
    assert "restore" in drawn
    assert "4/4" in drawn
    assert "━" in drawn
