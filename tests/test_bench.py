"""Each benchmark runs in its small mode, so that it cannot rot; timings are not asserted."""

import os

import pytest

from bench import e0_estimation

# The benchmarks that train several jobs both ways take minutes each even in their small mode:
# they run with MLFT_BENCH_TESTS=1 (before changing bench/), so the default run stays within its
# time on 2 cores.
heavy = pytest.mark.skipif(
    os.environ.get("MLFT_BENCH_TESTS") != "1",
    reason="trains several jobs both ways: MLFT_BENCH_TESTS=1 runs it",
)


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


@heavy
def test_platform_overhead_benchmark_runs_both_paths(demo_foundation, capsys) -> None:
    from bench import platform_overhead

    platform_overhead.main(["--small"])

    printed = capsys.readouterr().out
    assert float(printed.split("ratio (target ≤ 1.05)")[1].split()[0]) > 0


def printed_numbers(printed: str, name: str) -> list[float]:
    """The numbers of the printed row `name   a / b / c`."""
    line = next(line for line in printed.splitlines() if line.startswith(f"{name} "))
    return [float(part) for part in line.removeprefix(name).split("/")]


def test_api_load_benchmark_measures_requests_and_upload_and_leaves_nothing_queued(
    demo_foundation, capsys
) -> None:
    import redis

    from bench import api_load

    api_load.main(["--small"])

    printed = capsys.readouterr().out
    answered = "GET /jobs/{id}: answered 2xx / 503 or 429 with Retry-After / errors (5xx, none)"
    assert printed_numbers(printed, answered)[2] == 0
    for endpoint in ("POST /jobs", "GET /jobs/{id}"):
        assert printed_numbers(printed, f"{endpoint}: requests/s")[0] > 0
        p50, p99 = printed_numbers(printed, f"{endpoint}: p50 / p99 latency (ms)")
        assert 0 < p50 <= p99
    megabytes, configs, atoms = printed_numbers(
        printed, "upload: size (MB) / configurations / atoms"
    )
    assert megabytes >= 2 and configs > 0 and atoms > configs
    assert printed_numbers(printed, "upload + validation + storage (MB/s)")[0] > 0
    before, after = printed_numbers(printed, "server peak RSS before / after upload (MB)")
    assert 0 < before <= after
    assert redis.Redis.from_url(api_load.BROKER_URL).dbsize() == 0


def test_strategy_throughput_benchmark_measures_each_strategy(
    demo_foundation, capsys, tmp_path
) -> None:
    from bench import strategy_throughput

    table = tmp_path / "out" / "strategy_costs.md"
    strategy_throughput.main(["--small", "--table", str(table)])

    printed = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in table.read_text().splitlines()
        if line.startswith("| ") and not line.startswith("| strategy")
    }
    assert set(rows) == {"naive", "multihead_replay"}
    for strategy in ("naive", "multihead_replay"):
        stage_rate, loop_rate = printed_numbers(
            printed, f"{strategy}: configurations/s, training stage / epoch loop"
        )
        seconds, peak, _ = printed_numbers(
            printed, f"{strategy}: training stage (s) / peak RSS (MB) / load average"
        )
        assert 0 < stage_rate < loop_rate
        assert seconds > 0 and peak > 0
        batch, epoch, stage, rss, gpu, worker_gpu, _ = rows[strategy]
        assert int(batch) > 0 and 0 < float(epoch) <= float(stage) and float(rss) > 0
        # On a CPU there is no GPU memory to report.
        assert gpu == worker_gpu == "-"


@heavy
def test_sweep_benchmark_runs_both_ways(demo_foundation, capsys) -> None:
    from bench import sweep

    sweep.main(["--small"])

    printed = capsys.readouterr().out
    assert float(printed.split("sweep / one by one")[1].split()[0]) > 0


def test_replay_sets_benchmark_measures_each_step(demo_foundation, capsys) -> None:
    from bench import replay_sets

    replay_sets.main(["--small"])

    printed = capsys.readouterr().out
    batched, single = printed_numbers(
        printed, "40 candidates: descriptors, structures/s batched / one at a time"
    )
    assert batched > 0 and single > 0
    assert printed_numbers(printed, "whole build: peak RSS / increase during the build (MB)")[0] > 0


def test_gpu_workers_benchmark_picks_a_batch_from_its_curve(capsys) -> None:
    from bench import gpu_workers

    gpu_workers.main(["--small", "--device", "cpu"])

    printed = capsys.readouterr().out
    assert "picked batch" in printed
    assert "atoms/s" in printed


def test_strategy_comparison_rows_say_what_was_not_measured_and_why_md_failed() -> None:
    from bench.strategy_comparison import table

    row = {
        "job_id": "j",
        "strategy": "scratch",
        "state": "succeeded",
        "test_energy_rmse_mev_per_atom": 1.25,
        "test_forces_rmse_mev_per_a": 30.0,
        "dimer_holes": 0,
        "new_dimer_holes": 0,
        "wall_time_s": 12.0,
    }
    metrics = {
        "not_measured": {"forgetting": "nothing to forget"},
        "md": [
            {"stable": True, "kind": "constant", "total_ps": 0.01, "study_ps": 250},
            {
                "stable": False,
                "kind": "ramp",
                "total_ps": 0.01,
                "study_ps": 50,
                "failure_reason": "bonds_changed",
                "survived_ps": 0.004,
            },
        ],
    }

    (line,) = table([row], {"j": metrics})[2:]

    assert "not measured: nothing to forget" in line
    assert "unstable (ramp: bonds_changed at 0.004 ps)" in line
