"""The patient's space benchmark (benchmarks/space.py) runs end to end on a small record;
its figures are printed, never asserted (docs/performance.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "space.py"


def test_space_benchmark_times_every_page_of_a_small_record():
    spec = importlib.util.spec_from_file_location("space_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules["space_bench"] = module
    spec.loader.exec_module(module)
    results = module.measure(documents=25, entries=60, samples=3)
    assert results["documents"] == 25
    pages = {row["page"]: row for row in results["pages"]}
    assert set(pages) == {
        "documents, first page",
        "documents, second page",
        "documents, one category",
        "history, first page",
        "history, second page",
        "history, professionals only",
    }
    assert all(row["samples"] == 3 for row in pages.values())
