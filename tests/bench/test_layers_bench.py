"""`rtrl bench layers`: the formulas match the state the code allocates, and a tiny run prints and records
its tables (skipping what does not fit the budgets, with the predicted cost)."""
import pytest

from rtrl.bench import layers
from rtrl.cli import main


@pytest.mark.parametrize("mode", ["exact", "per-layer", "bptt"])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_formula_counts_the_state_the_code_allocates(mode, L):
    for N in (3, 8):
        assert layers.state_floats(mode, L, N) == layers.predicted_floats(mode, L, N)


def test_formula_orders():
    # exact: O(N³) memory for L >= 2, O(N³) time for L=2 and O(N⁴) for L=3; per-layer and BPTT O(N²)
    ratio = lambda f, *a: f(*a[:-1], 2 * a[-1]) / f(*a)  # noqa: E731
    assert 7 < ratio(lambda m, L, N: layers.predicted_floats(m, L, N), "exact", 2, 512) < 8.1
    assert 7 < ratio(lambda m, L, N: layers.predicted_macs(m, L, N, 50), "exact", 2, 512) < 8.1
    assert 14 < ratio(lambda m, L, N: layers.predicted_macs(m, L, N, 50), "exact", 3, 512) < 16.1
    for mode in ("per-layer", "bptt"):
        assert 3.5 < ratio(lambda m, L, N: layers.predicted_macs(m, L, N, 50), mode, 2, 512) < 4.1
    assert layers.largest_n("exact", 2, 32, 24, 1) > layers.largest_n("exact", 2, 32, 24, 2)


def test_bench_layers_prints_records_and_skips_over_budget(tmp_path, capsys):
    doc = tmp_path / "MULTILAYER.md"
    doc.write_text("# Multi-layer\n\nintro kept\n")
    argv = ["bench", "layers", "--layers", "1", "2", "--hidden-sizes", "4", "8", "--length", "4", "--batch-size", "2",
            "--repeats", "1", "--memory-budget", "0.000002", "--record", str(doc)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and " ms" not in line and "---" not in line]
    timed = [r for r in rows if r.count("|") == 10 and "skipped" not in r]
    skipped = [r for r in rows if "skipped: predicted" in r]
    # 2 KiB of budget: exact L=2, N=8 (2 × 3.5 KiB per sequence, three copies) cannot run even at B=1
    assert any("| 2 | 8 | exact |" in r for r in skipped) and any("| 2 | 4 | per-layer |" in r for r in timed)
    text = doc.read_text()
    assert "intro kept" in text and "<!-- begin rtrl bench layers -->" in text and "- command: `" in text
    assert "Growth of the time per step with N" in text and "Exact L=2 at the paper's batch 32" in text
