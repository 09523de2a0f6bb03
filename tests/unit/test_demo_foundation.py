"""The EMT demo data and the tiny MACE foundation trained on them."""

import logging
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.data import atomic_numbers
from mace.calculators import MACECalculator

from core.data.demo_data import (
    DEFAULT_ENERGY_OFFSETS,
    EMT_ELEMENTS,
    TARGET_ELEMENTS,
    emt_dimer_bond_length,
    energy_offset,
    generate_foundation_configurations,
    generate_target_dataset,
    isolated_atom_energies,
    write_extxyz,
)
from core.registry.foundations import file_sha256
from core.science import demo_foundation
from core.science.demo_foundation import build_demo_foundation, demo_foundation_e0s


@dataclass(frozen=True)
class ProcessState:
    """What mace's `run` changes for the whole process and the build must put back."""

    dtype: torch.dtype
    level: int
    handlers: tuple[logging.Handler, ...]

    @classmethod
    def now(cls) -> "ProcessState":
        root = logging.getLogger()
        return cls(torch.get_default_dtype(), root.level, tuple(root.handlers))


@dataclass(frozen=True)
class Build:
    model: Path
    before: ProcessState
    after: ProcessState


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    # A few epochs on a small sample: enough for a real mace-trained module, fast enough for a unit
    # test. Accuracy is the full build's business, not this file's.
    folder = tmp_path_factory.mktemp("demo-foundation")
    before = ProcessState.now()
    model = build_demo_foundation(
        folder / "demo.model", seed=3, n_configs=48, max_epochs=2, work_dir=folder / "work"
    )
    return Build(model, before, ProcessState.now())


@pytest.fixture(scope="module")
def calculator(build: Build) -> MACECalculator:
    return MACECalculator(model_paths=str(build.model), device="cpu", default_dtype="float64")


def _predict(atoms: Atoms, calculator: MACECalculator) -> tuple[float, np.ndarray]:
    atoms.calc = calculator
    return atoms.get_potential_energy(), atoms.get_forces()


def test_model_is_a_two_interaction_float64_mace_over_every_emt_element(build: Build) -> None:
    model = torch.load(build.model, weights_only=False, map_location="cpu")

    assert len(model.interactions) == 2
    assert next(model.parameters()).dtype == torch.float64
    expected = sorted(atomic_numbers[symbol] for symbol in EMT_ELEMENTS)
    assert model.atomic_numbers.tolist() == expected


def test_build_leaves_torch_dtype_and_root_logger_as_it_found_them(build: Build) -> None:
    assert build.after == build.before


@pytest.mark.parametrize(
    "atoms",
    [molecule("CH3OH"), bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)],
    ids=["molecule", "periodic-cell"],
)
def test_model_gives_finite_energy_and_forces_per_atom(
    atoms: Atoms, calculator: MACECalculator
) -> None:
    energy, forces = _predict(atoms, calculator)

    assert np.isfinite(energy)
    assert forces.shape == (len(atoms), 3)
    assert np.isfinite(forces).all()


@pytest.mark.parametrize("symbol", EMT_ELEMENTS)
def test_isolated_atom_energy_equals_its_emt_e0(symbol: str, calculator: MACECalculator) -> None:
    energy, _ = _predict(Atoms(symbol, cell=[12.0] * 3), calculator)

    assert energy == pytest.approx(demo_foundation_e0s()[symbol], abs=1e-6)


def test_shipped_demo_foundation_installs_pinned_and_gives_each_lone_atom_its_emt_e0(
    tmp_path: Path,
) -> None:
    installed = tmp_path / "models" / "mace-demo-emt.model"

    assert demo_foundation.install_shipped_demo_foundation(installed)

    pin = installed.with_name(installed.name + ".sha256").read_text().strip()
    assert pin == file_sha256(installed) == demo_foundation.SHIPPED_DEMO_SHA256
    calculator = MACECalculator(model_paths=str(installed), device="cpu", default_dtype="float64")
    e0s = demo_foundation_e0s()
    for symbol in ("Cu", "O"):
        energy, _ = _predict(Atoms(symbol, cell=[12.0] * 3), calculator)
        assert energy == pytest.approx(e0s[symbol], abs=1e-6)


def test_a_shipped_demo_foundation_that_is_not_the_pinned_file_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = tmp_path / "shipped.model"
    tampered.write_bytes(demo_foundation.SHIPPED_DEMO_MODEL.read_bytes() + b"\0")
    monkeypatch.setattr(demo_foundation, "SHIPPED_DEMO_MODEL", tampered)
    installed = tmp_path / "models" / "mace-demo-emt.model"

    assert not demo_foundation.install_shipped_demo_foundation(installed)

    assert not installed.parent.exists() or not any(installed.parent.iterdir())


def test_isolated_atom_energies_are_emt_cohesive_energies() -> None:
    # EMT's zero is the fcc crystal, so a free atom costs its cohesive energy (a few eV).
    energies = isolated_atom_energies(EMT_ELEMENTS)

    assert all(1.0 < energy < 8.0 for energy in energies.values())


def test_foundation_configurations_cover_every_element_with_mace_labels() -> None:
    configs = generate_foundation_configurations(48, seed=0)

    assert {s for atoms in configs for s in atoms.get_chemical_symbols()} == set(EMT_ELEMENTS)
    for atoms in configs:
        assert atoms.calc is None
        assert len(atoms) <= 16
        assert np.isfinite(atoms.info["REF_energy"])
        assert atoms.arrays["REF_forces"].shape == (len(atoms), 3)
        assert ("REF_stress" in atoms.info) == bool(atoms.pbc.all())
    assert {atoms.info["config_type"] for atoms in configs} == {
        "bulk",
        "alloy",
        "molecule",
        "dimer",
        "adsorbate",
    }


def test_foundation_configurations_are_reproducible_from_the_seed() -> None:
    first, again = (generate_foundation_configurations(16, seed=7) for _ in range(2))
    other = generate_foundation_configurations(16, seed=8)

    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first, again, strict=True))
    assert not all(
        np.array_equal(a.positions, b.positions) for a, b in zip(first, other, strict=True)
    )


def test_foundation_dimers_sample_emt_repulsive_wall() -> None:
    dimers = [
        atoms
        for atoms in generate_foundation_configurations(240, seed=0)
        if atoms.info["config_type"] == "dimer"
    ]
    # 0.95: the bond length is known to the 0.02 Å of its grid.
    compressed = [
        atoms for atoms in dimers if atoms.get_distance(0, 1) < 0.95 * _bond_length(atoms)
    ]

    assert len(compressed) >= 5
    for atoms in compressed:
        bond = atoms.positions[1] - atoms.positions[0]
        assert atoms.arrays["REF_forces"][1] @ bond > 0


def _bond_length(dimer: Atoms) -> float:
    first, second = dimer.get_chemical_symbols()
    return emt_dimer_bond_length(first, second)


@pytest.mark.parametrize("system", sorted(TARGET_ELEMENTS))
def test_target_dataset_round_trips_through_extxyz_with_plain_keys(
    system: str, tmp_path: Path
) -> None:
    path = write_extxyz(generate_target_dataset(6, seed=1, system=system), tmp_path / "t.extxyz")

    text = path.read_text()
    assert " energy=" in text
    assert ":forces:R:3" in text
    read = ase.io.read(path, index=":", format="extxyz")
    assert len(read) == 6
    for atoms in read:
        labelled = atoms.get_potential_energy()
        assert atoms.get_forces().shape == (len(atoms), 3)
        emt = atoms.copy()
        emt.calc = EMT()
        shifted = emt.get_potential_energy() + energy_offset(atoms, DEFAULT_ENERGY_OFFSETS)
        assert labelled == pytest.approx(shifted, abs=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), emt.get_forces(), atol=1e-6)


@pytest.mark.parametrize("system", sorted(TARGET_ELEMENTS))
def test_target_compositions_make_a_per_element_fit_full_rank(system: str) -> None:
    elements = TARGET_ELEMENTS[system]
    configs = generate_target_dataset(len(elements), seed=0, system=system)

    counts = np.array([[a.get_chemical_symbols().count(e) for e in elements] for a in configs])
    assert np.linalg.matrix_rank(counts) == len(elements)


def test_target_offsets_are_applied_per_atom_and_isolated_atoms_carry_them() -> None:
    offsets = {"Cu": 1.5, "Au": -4.0}
    plain = generate_target_dataset(4, seed=2, energy_offsets={"Cu": 0.0, "Au": 0.0})
    shifted = generate_target_dataset(
        4, seed=2, energy_offsets=offsets, include_isolated_atoms=True
    )

    for before, after in zip(plain, shifted[:4], strict=True):
        difference = after.get_potential_energy() - before.get_potential_energy()
        assert difference == pytest.approx(energy_offset(before, offsets), abs=1e-9)
    isolated = {a.get_chemical_symbols()[0]: a for a in shifted[4:]}
    assert {a.info["config_type"] for a in isolated.values()} == {"IsolatedAtom"}
    e0s = isolated_atom_energies(["Cu", "Au"])
    for symbol, atoms in isolated.items():
        expected = e0s[symbol] + offsets[symbol]
        assert atoms.get_potential_energy() == pytest.approx(expected, abs=1e-9)


def test_target_dataset_refuses_offsets_that_miss_an_element() -> None:
    with pytest.raises(ValueError, match="Au"):
        generate_target_dataset(2, seed=0, system="CuAu", energy_offsets={"Cu": 1.0})
