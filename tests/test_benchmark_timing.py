"""benchmarks.common's alternating comparison: the paired ratio is the median over block pairs of nnforge's time
over torch's, not the quotient of the two medians, and print_table shows the ratio a row gives."""
from __future__ import annotations

import pytest

from benchmarks import common


def test_compare_paired_takes_the_median_of_per_pair_ratios(monkeypatch):
    # blocks alternate nnforge, torch, nnforge, ...: nnforge 2, 4, 9 and torch 1, 4, 3 seconds per call
    times = iter([2.0, 1.0, 4.0, 4.0, 9.0, 3.0])
    monkeypatch.setattr(common, "time_call", lambda fn, number: next(times))
    nf_median, torch_median, ratio = common.compare_paired(lambda: None, lambda: None, number=1, repeats=3, warmup=0)
    assert (nf_median, torch_median) == (4.0, 3.0)
    assert ratio == pytest.approx(2.0)  # pairs 2/1, 4/4, 9/3; the medians' quotient would be 1.33


def test_print_table_uses_the_row_ratio_when_given(capsys):
    common.print_table("t", [("paired", 4.0, 3.0, 2.0), ("plain", 4.0, 2.0)], unit="s", scale=1.0)
    lines = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("| p")}
    assert lines["paired"].split("|")[-2].strip() == "2.00"
    assert lines["plain"].split("|")[-2].strip() == "2.00"
    assert lines["paired"].split("|")[3].strip() == "3.00"
