"""Replay-set building: structures per second for descriptors, selection and labelling at 1k and
10k candidates, batched versus one structure at a time (mace's own calculator, as its
fine_tuning_select does), and the peak memory of a whole build.

Usage: python bench/replay_sets.py [--candidates 1000,10000] [--one-by-one 500] [--size 1000]
       [--small] [--out docs/benchmarks.md]
"""

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ase  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from mace.calculators import MACECalculator  # noqa: E402

from bench.common import demo_foundation_path, write_section  # noqa: E402
from core.data.demo_data import generate_target_dataset  # noqa: E402
from core.data.structure_generation import GENERATED_SOURCES, generate, seed_structures  # noqa: E402
from core.science.descriptors import structure_descriptors  # noqa: E402
from core.science.inference import predict  # noqa: E402
from core.science.replay_build import ReplayBuildInputs, build_replay_set  # noqa: E402
from core.science.selection import distinct_indices, farthest_point_indices  # noqa: E402

ELEMENTS = ["Cu", "Au"]


def candidates(count: int, seed: int = 0) -> list[ase.Atoms]:
    """Generated CuAu candidates, every source in equal parts, as a build pools them."""
    seeds = seed_structures(generate_target_dataset(20, seed=seed, system="CuAu"), ELEMENTS)
    per_source = -(-count // len(GENERATED_SOURCES))
    made = [
        candidate.atoms
        for index, source in enumerate(GENERATED_SOURCES)
        for candidate in generate(
            source, seeds, ELEMENTS, per_source, np.random.default_rng([seed, index]), cutoff=5.0
        )
    ]
    return made[:count]


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def one_at_a_time(calculator: MACECalculator, configs: list[ase.Atoms], labels: bool) -> None:
    for atoms in configs:
        copy = atoms.copy()
        if labels:
            copy.calc = calculator
            copy.get_potential_energy()
            copy.get_forces()
            if copy.pbc.all():
                copy.get_stress()
        else:
            calculator.get_descriptors(copy, invariants_only=True).mean(axis=0)


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every 20 ms."""

    def __enter__(self) -> "PeakMemory":
        self.process = psutil.Process()
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *_exc: object) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="1000,10000")
    parser.add_argument("--one-by-one", type=int, default=500, help="structures timed singly")
    parser.add_argument("--size", type=int, default=1000, help="replay set size of the build")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--small", action="store_true", help="a few dozen structures (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    counts = [40] if args.small else [int(n) for n in args.candidates.split(",")]
    singly = 10 if args.small else args.one_by_one
    size = 10 if args.small else args.size
    path = demo_foundation_path()
    model = torch.load(path, map_location="cpu", weights_only=False)
    calculator = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float64")
    batch = args.batch_size

    rows: list[tuple[str, str]] = [("batch size", f"{batch}"), ("elements", "Cu, Au")]
    for count in counts:
        pool = candidates(count)
        descriptors, batched_s = timed(
            lambda pool=pool: structure_descriptors(model, pool, batch_size=batch)
        )
        _, single_s = timed(lambda pool=pool: one_at_a_time(calculator, pool[:singly], False))
        chosen, select_s = timed(
            lambda d=descriptors, n=count: distinct_indices(d)[
                farthest_point_indices(d[distinct_indices(d)], max(1, n // 10))
            ]
        )
        selected = [pool[index] for index in chosen]
        _, label_s = timed(
            lambda pool=pool: predict(model, pool, batch_size=batch, forces=True, stress=True)
        )
        _, label_single_s = timed(lambda pool=pool: one_at_a_time(calculator, pool[:singly], True))
        n_single = min(singly, len(pool))
        rows += [
            (f"{count} candidates: atoms per structure", f"{np.mean([len(a) for a in pool]):.1f}"),
            (
                f"{count} candidates: descriptors, structures/s batched / one at a time",
                f"{len(pool) / batched_s:.0f} / {n_single / single_s:.0f}",
            ),
            (
                f"{count} candidates: dedupe + farthest-point selection of {len(selected)}, "
                "structures/s",
                f"{len(pool) / select_s:.0f}",
            ),
            (
                f"{count} candidates: labels (E, F, stress), structures/s batched / one at a time",
                f"{len(pool) / label_s:.0f} / {n_single / label_single_s:.0f}",
            ),
        ]
    pool = candidates(max(counts))
    inputs = ReplayBuildInputs(ELEMENTS, [], [], size=size, seed=0, pool=pool)
    with PeakMemory() as memory:
        built, build_s = timed(lambda: build_replay_set(model, inputs, batch_size=batch))
    rows += [
        (
            f"whole build from {len(pool)} candidates to {built.report['size']}: seconds",
            f"{build_s:.1f}",
        ),
        (
            "whole build: peak RSS / increase during the build (MB)",
            f"{memory.peak / 2**20:.0f} / {(memory.peak - memory.before) / 2**20:.0f}",
        ),
    ]
    for name, value in rows:
        print(f"{name:80s} {value}")
    if args.out is not None:
        command = (
            f"python bench/replay_sets.py --candidates {','.join(map(str, counts))} "
            f"--one-by-one {singly} --size {size} --out {args.out}"
        )
        write_section(
            args.out, "Replay sets: descriptors, selection, labelling", rows, command=command
        )


if __name__ == "__main__":
    main()
