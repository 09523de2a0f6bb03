"""Foundation inference for E0 estimation: mlft's batched predictions versus mace-torch's own
estimator (one configuration per forward pass), side by side on the same data in one run.

Usage: python bench/e0_estimation.py [--data acac|molecules] [--configs 650] [--small]
                                     [--out docs/benchmarks.md]

`acac` (the default when ../shared/data is there) is real DFT data: 15-atom acetylacetone
configurations. `molecules` are the demo's 2-6 atom EMT molecules, where per-configuration
graph construction, not the model, dominates both sides.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.data import atomic_numbers, chemical_symbols  # noqa: E402
from mace.data import KeySpecification, config_from_atoms  # noqa: E402
from mace.data.utils import estimate_e0s_from_foundation  # noqa: E402
from mace.tools import AtomicNumberTable  # noqa: E402

from bench.common import demo_foundation_path, write_section  # noqa: E402
from core.data.datasets import read_configurations  # noqa: E402
from core.data.demo_data import generate_target_dataset  # noqa: E402
from core.data.label_values import labels_of  # noqa: E402
from core.science.e0s import estimate_e0s, model_e0s  # noqa: E402

ACAC_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "acac-pbe-d3-test_MD_300K.xyz"
DATA_DESCRIPTION = {
    "acac": "acetylacetone, PBE-D3 (../shared/data, test set)",
    "molecules": "demo EMT molecules (core.data.demo_data)",
}


def mace_estimate(model: torch.nn.Module, configs: list, energies: np.ndarray) -> dict[str, float]:
    keys = KeySpecification(info_keys={"energy": "REF_energy"}, arrays_keys={})
    mace_configs = []
    for atoms, energy in zip(configs, energies, strict=True):
        copy = atoms.copy()
        copy.calc = None
        copy.info["REF_energy"] = energy
        mace_configs.append(config_from_atoms(copy, key_specification=keys))
    zs = sorted({int(z) for atoms in configs for z in atoms.numbers})
    foundation = model_e0s(model)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result = estimate_e0s_from_foundation(
            foundation_model=model,
            foundation_e0s=foundation,
            collections_train=mace_configs,
            z_table=AtomicNumberTable(zs),
        )
    finally:
        torch.set_default_dtype(previous)
    return {chemical_symbols[z]: float(e) for z, e in result.items()}


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["acac", "molecules"], default=None)
    parser.add_argument("--configs", type=int, default=650)
    parser.add_argument("--small", action="store_true", help="a few configurations (tests)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    data = args.data or ("acac" if ACAC_TEST.is_file() and not args.small else "molecules")
    count = 20 if args.small else args.configs
    model = torch.load(demo_foundation_path(), map_location="cpu", weights_only=False)
    if data == "acac":
        configs = read_configurations(ACAC_TEST)[:count]
    else:
        configs = generate_target_dataset(count, seed=11, system="molecules")
    count = len(configs)
    energies = np.array([labels_of(atoms).energy for atoms in configs])

    batched, batched_seconds = timed(lambda: estimate_e0s(model, configs, energies).e0s)
    reference, mace_seconds = timed(mace_estimate, model, configs, energies)
    worst = max(abs(batched[s] - reference[s]) for s in reference)
    atoms = sum(len(config) for config in configs) / count
    rows = [
        ("data", DATA_DESCRIPTION[data]),
        ("configurations / atoms each on average", f"{count} / {atoms:.1f}"),
        ("mace-torch estimator (s)", f"{mace_seconds:.2f}"),
        ("mlft batched (s)", f"{batched_seconds:.2f}"),
        ("speed-up", f"{mace_seconds / batched_seconds:.1f}x"),
        ("largest E0 difference (eV)", f"{worst:.2e}"),
    ]
    for name, value in rows:
        print(f"{name:32s} {value}")
    assert set(batched) == set(reference) and all(s in atomic_numbers for s in batched)
    if args.out is not None:
        write_section(
            args.out,
            "E0 estimation: batched foundation inference vs mace-torch's estimator",
            rows,
            command=(
                f"python bench/e0_estimation.py --data {data} --configs {count} --out {args.out}"
            ),
        )


if __name__ == "__main__":
    main()
