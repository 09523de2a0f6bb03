"""Each benchmark runs in its small mode, so that it cannot rot; timings are not asserted."""

import pytest

from bench import e0_estimation


def test_e0_estimation_benchmark_agrees_with_mace(demo_foundation, tmp_path, capsys) -> None:
    out = tmp_path / "benchmarks.md"

    e0_estimation.main(["--small", "--out", str(out)])

    printed = capsys.readouterr().out
    difference = float(printed.split("largest E0 difference (eV)")[1].split()[0])
    assert difference < 1e-6
    assert "## E0 estimation" in out.read_text()


@pytest.mark.parametrize("runs", [1, 2])
def test_results_file_keeps_one_section_per_benchmark(tmp_path, runs) -> None:
    from bench.common import write_section

    out = tmp_path / "benchmarks.md"
    for index in range(runs):
        write_section(out, "A", [("x", str(index))], command="c")
    write_section(out, "B", [("y", "1")], command="c")

    text = out.read_text()
    assert text.count("## A") == 1 and text.count("## B") == 1
    assert f"| x | {runs - 1} |" in text


def test_platform_overhead_benchmark_runs_both_paths(demo_foundation, capsys) -> None:
    from bench import platform_overhead

    platform_overhead.main(["--small"])

    printed = capsys.readouterr().out
    assert float(printed.split("ratio (target ≤ 1.05)")[1].split()[0]) > 0
