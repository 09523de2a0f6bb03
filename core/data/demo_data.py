"""EMT-labelled configurations: training data of the demo foundation and demo fine-tuning targets.

ASE's EMT potential is cheap and has parameters for H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt and Au, which
is enough to build a small foundation model here without downloads. Every configuration stays at
or below 16 atoms so that mace-torch trains on it in seconds on a CPU.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Literal, cast

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, reference_states
from ase.optimize import BFGS

EMT_METALS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
EMT_NONMETALS = ("H", "C", "N", "O")
EMT_ELEMENTS = EMT_NONMETALS + EMT_METALS

# Molecules of the G2 set that contain only EMT's non-metals.
FOUNDATION_MOLECULES = (
    "H2", "N2", "O2", "CO", "CO2", "CH4", "NH3", "H2O", "C2H2", "HCN",
    "C2H4", "H2CO", "NO", "N2O", "CH3OH", "C2H6", "CH3CN", "HCOOH",
)  # fmt: skip
# The first four already make the H, C, N, O composition matrix full rank, so even a handful of
# target configurations lets a per-element least-squares E0 fit succeed.
TARGET_MOLECULES = ("H2O", "CH4", "NH3", "CO2", "HCN", "C2H4", "CH3OH", "N2O", "H2CO", "C2H2")
ADSORBATES = ("H", "C", "N", "O", "CO", "OH")

TargetSystem = Literal["CuAu", "molecules"]
TARGET_ELEMENTS: dict[TargetSystem, tuple[str, ...]] = {
    "CuAu": ("Cu", "Au"),
    "molecules": EMT_NONMETALS,
}
# A few eV per element and different for each, as between two DFT codes or functionals, so that a
# fine-tuning job that keeps the foundation's E0s starts eV per atom off, far above the
# ~500 meV/atom at which an E0 mismatch shows.
DEFAULT_ENERGY_OFFSETS: dict[str, float] = {
    "H": -1.7,
    "C": -4.1,
    "N": -3.3,
    "O": -2.6,
    "Al": -1.2,
    "Ni": -2.2,
    "Cu": -2.9,
    "Pd": -1.6,
    "Ag": -1.4,
    "Pt": -3.6,
    "Au": -2.3,
}

# Å of empty cell around finite systems, beyond EMT's cutoff and any r_max a demo model uses, so
# they stay isolated even for a reader that treats the written cell as periodic.
VACUUM = 6.0
MAX_RATTLE = 0.1  # Å; larger displacements reach EMT's unphysical regime for molecules
MAX_STRAIN = 0.04


def generate_foundation_configurations(n_configs: int, seed: int) -> list[Atoms]:
    """Diverse EMT configurations labelled with mace-torch's default keys (REF_energy, ...).

    Kinds rotate in a fixed order and elements cycle through the EMT set, so that even a few dozen
    configurations cover every element and every kind of environment.
    """
    rng = np.random.default_rng(seed)
    kinds = _foundation_kinds()
    configs = []
    for index in range(n_configs):
        atoms = kinds[index % len(kinds)](rng, index // len(kinds))
        _store_foundation_labels(atoms)
        configs.append(atoms)
    return configs


def copper_cells(count: int, seed: int) -> list[Atoms]:
    """Rattled, strained 4-atom copper cells labelled by EMT shifted by the target's Cu offset:
    one-element training data for a many-element foundation."""
    rng = np.random.default_rng(seed)
    configs = []
    for index in range(count):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.02, 0.02)), cubic=True)
        atoms.rattle(0.05, seed=seed * 1000 + index)
        atoms.calc = EMT()
        energy = atoms.get_potential_energy() + DEFAULT_ENERGY_OFFSETS["Cu"] * len(atoms)
        forces, stress = atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        configs.append(atoms)
    return configs


def isolated_atom_energies(symbols: Iterable[str]) -> dict[str, float]:
    """EMT energy of each element as a single atom in vacuum: the demo foundation's E0s."""
    return {symbol: _emt_energy(_isolated_atom(symbol)) for symbol in symbols}


def generate_target_dataset(
    n_configs: int,
    seed: int,
    *,
    system: TargetSystem = "CuAu",
    energy_offsets: Mapping[str, float] | None = None,
    include_isolated_atoms: bool = False,
) -> list[Atoms]:
    """A fine-tuning target that emulates another level of theory than the demo foundation.

    Energies are EMT energies plus Σ_atoms offset[element]; forces (and stress of periodic cells)
    are EMT's, since a per-atom constant does not change them. Labels sit in a
    SinglePointCalculator, so extxyz files carry them under the plain `energy`/`forces`/`stress`
    keys. With `include_isolated_atoms`, one `IsolatedAtom` configuration per element is appended,
    labelled at the same shifted level of theory.
    """
    elements = TARGET_ELEMENTS[system]
    offsets = _offsets_for(elements, energy_offsets)
    rng = np.random.default_rng(seed)
    build = _cuau_alloy if system == "CuAu" else _target_molecule
    configs = [build(rng, index) for index in range(n_configs)]
    if include_isolated_atoms:
        configs += [_isolated_atom(symbol) for symbol in elements]
    for atoms in configs:
        _attach_shifted_labels(atoms, offsets)
    return configs


def write_extxyz(configs: Sequence[Atoms], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, list(configs), format="extxyz")
    return path


def energy_offset(atoms: Atoms, offsets: Mapping[str, float]) -> float:
    """Σ_atoms offset[element]: what a target dataset adds to the EMT energy of `atoms`."""
    return float(sum(offsets[symbol] for symbol in atoms.get_chemical_symbols()))


Builder = Callable[[np.random.Generator, int], Atoms]


def _foundation_kinds() -> tuple[Builder, ...]:
    # Bulk and alloys twice: periodic cells are where stresses come from and what fine-tuning
    # targets most often are.
    return (
        _bulk_metal,
        _foundation_molecule,
        _binary_alloy,
        _dimer,
        _bulk_metal,
        _adsorbate,
        _binary_alloy,
        _foundation_molecule,
    )


def _bulk_metal(rng: np.random.Generator, cycle: int) -> Atoms:
    symbol = EMT_METALS[cycle % len(EMT_METALS)]
    atoms = bulk(symbol, "fcc", a=_lattice_constant([symbol]), cubic=True)
    if rng.random() < 0.5:
        atoms = atoms.repeat((2, 1, 1))
    atoms.info["config_type"] = "bulk"
    return _rattled(_strained(atoms, rng), rng)


def _binary_alloy(rng: np.random.Generator, cycle: int) -> Atoms:
    first = EMT_METALS[cycle % len(EMT_METALS)]
    second = EMT_METALS[(cycle + 1 + rng.integers(len(EMT_METALS) - 1)) % len(EMT_METALS)]
    n_first = int(rng.integers(1, 8))
    symbols = [first] * n_first + [second] * (8 - n_first)
    return _alloy_cell(symbols, rng, config_type="alloy")


def _cuau_alloy(rng: np.random.Generator, index: int) -> Atoms:
    # Compositions step through 0, 25, 50, 75 and 100 % Cu in 4- and 8-atom cells, so the
    # (n_Cu, n_Au) composition matrix is full rank from the second configuration on.
    n_atoms = (4, 8)[index % 2]
    n_cu = round(n_atoms * (index % 5) / 4)
    symbols = ["Cu"] * n_cu + ["Au"] * (n_atoms - n_cu)
    return _alloy_cell(symbols, rng, config_type="CuAu")


def _alloy_cell(symbols: list[str], rng: np.random.Generator, *, config_type: str) -> Atoms:
    cubic = bulk("X", "fcc", a=_lattice_constant(symbols), cubic=True)
    atoms = cubic.repeat((len(symbols) // len(cubic), 1, 1))
    atoms.set_chemical_symbols(list(rng.permutation(symbols)))
    atoms.info["config_type"] = config_type
    return _rattled(_strained(atoms, rng), rng)


def _foundation_molecule(rng: np.random.Generator, cycle: int) -> Atoms:
    name = FOUNDATION_MOLECULES[cycle % len(FOUNDATION_MOLECULES)]
    return _molecule_in_vacuum(name, rng, config_type="molecule")


def _target_molecule(rng: np.random.Generator, index: int) -> Atoms:
    name = TARGET_MOLECULES[index % len(TARGET_MOLECULES)]
    return _molecule_in_vacuum(name, rng, config_type="molecule")


def _molecule_in_vacuum(name: str, rng: np.random.Generator, *, config_type: str) -> Atoms:
    atoms = _emt_relaxed_molecule(name).copy()
    atoms.info["config_type"] = config_type
    return _rattled(atoms, rng)


@cache
def _emt_relaxed_molecule(name: str) -> Atoms:
    # G2 geometries are up to 8 eV/Å off EMT's minima; rattling around EMT's own minimum samples
    # what a short MD run at this level of theory would see.
    atoms = molecule(name)
    atoms.center(vacuum=VACUUM)
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=200)
    atoms.calc = None
    return atoms


def _adsorbate(rng: np.random.Generator, cycle: int) -> Atoms:
    metal = EMT_METALS[cycle % len(EMT_METALS)]
    slab = fcc111(metal, size=(2, 2, 2), a=_lattice_constant([metal]), vacuum=VACUUM)
    species = ADSORBATES[cycle % len(ADSORBATES)]
    adsorbate = _emt_relaxed_molecule(species).copy() if len(species) > 1 else Atoms(species)
    # G2 molecules lie along z with C below O in CO, so the lowest atom is the one that binds. Its
    # height scales with EMT's metal-adsorbate bond length, which for H is twice a real one (2 Å):
    # a fixed height close enough for O puts H on EMT's wall at hundreds of eV/Å.
    binding = int(adsorbate.positions[:, 2].argmin())
    bond = emt_dimer_bond_length(metal, adsorbate.get_chemical_symbols()[binding])
    height = slab.positions[:, 2].max() + rng.uniform(0.85, 1.2) * bond
    site = rng.random(2) @ slab.cell[:2, :2]
    adsorbate.translate([*site, height] - adsorbate.positions[binding])
    atoms = slab + adsorbate
    atoms.info["config_type"] = "adsorbate"
    return _rattled(atoms, rng)


def _dimer(rng: np.random.Generator, cycle: int) -> Atoms:
    # 0.75 to 1.35 times EMT's own bond length, so about half sit on the repulsive wall (up to
    # ~15 eV high), which is what teaches a model short-range repulsion; shorter metal pairs cost
    # hundreds of eV and would dominate the loss of a tiny model.
    first = EMT_ELEMENTS[cycle % len(EMT_ELEMENTS)]
    second = EMT_ELEMENTS[rng.integers(len(EMT_ELEMENTS))]
    distance = rng.uniform(0.75, 1.35) * emt_dimer_bond_length(first, second)
    return _dimer_at(first, second, distance)


@cache
def emt_dimer_bond_length(first: str, second: str) -> float:
    """Distance of lowest EMT energy of an isolated pair, on a 0.02 Å grid."""
    # From 0.6 Å: below 0.8 Å EMT's Al-Pt pair turns attractive without bound (-77 eV at 0.4 Å).
    distances = np.arange(0.6, 4.0, 0.02)
    # The whole scan in one EMT call: pairs 20 Å apart, beyond EMT's cutoff, summed per pair from
    # EMT's per-atom energies.
    positions = np.zeros((2 * len(distances), 3))
    positions[:, 0] = np.repeat(20.0 * np.arange(len(distances)), 2)
    positions[1::2, 2] = distances
    pairs = Atoms([first, second] * len(distances), positions=positions, calculator=EMT())
    energies = pairs.get_potential_energies().reshape(-1, 2).sum(axis=1)
    return float(distances[int(np.argmin(energies))])


def _dimer_at(first: str, second: str, distance: float) -> Atoms:
    atoms = Atoms([first, second], positions=[[0, 0, 0], [0, 0, distance]])
    atoms.center(vacuum=VACUUM)
    atoms.info["config_type"] = "dimer"
    return atoms


def _isolated_atom(symbol: str) -> Atoms:
    atoms = Atoms(symbol, cell=[2 * VACUUM] * 3)
    atoms.info["config_type"] = "IsolatedAtom"
    return atoms


def _lattice_constant(symbols: Sequence[str]) -> float:
    """Vegard's law over the experimental fcc lattice constants, close to EMT's own."""
    return float(np.mean([_fcc_lattice_constant(s) for s in symbols]))


def _fcc_lattice_constant(symbol: str) -> float:
    state = reference_states[atomic_numbers[symbol]]
    if state is None:  # ASE has no reference state for a few elements
        raise ValueError(f"ASE has no reference lattice constant for {symbol}")
    return cast(float, state["a"])  # ASE types the table's values as any of its value types


def _strained(atoms: Atoms, rng: np.random.Generator) -> Atoms:
    strain = rng.uniform(-MAX_STRAIN, MAX_STRAIN, size=(3, 3))
    deformation = np.eye(3) + (strain + strain.T) / 2
    atoms.set_cell(atoms.cell @ deformation, scale_atoms=True)
    return atoms


def _rattled(atoms: Atoms, rng: np.random.Generator) -> Atoms:
    atoms.positions += rng.normal(scale=rng.uniform(0.03, MAX_RATTLE), size=atoms.positions.shape)
    return atoms


def _emt_energy(atoms: Atoms) -> float:
    atoms.calc = EMT()
    energy = float(atoms.get_potential_energy())
    atoms.calc = None
    return energy


def _store_foundation_labels(atoms: Atoms) -> None:
    atoms.calc = EMT()
    atoms.info["REF_energy"] = float(atoms.get_potential_energy())
    atoms.arrays["REF_forces"] = atoms.get_forces()
    # Stress only where a cell is periodic in every direction; mace reads Voigt-6 or 3x3.
    if atoms.pbc.all():
        atoms.info["REF_stress"] = atoms.get_stress(voigt=True)
    atoms.calc = None


def _attach_shifted_labels(atoms: Atoms, offsets: Mapping[str, float]) -> None:
    atoms.calc = EMT()
    results = {
        "energy": float(atoms.get_potential_energy()) + energy_offset(atoms, offsets),
        "forces": atoms.get_forces(),
    }
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress(voigt=True)
    atoms.calc = SinglePointCalculator(atoms, **results)


def _offsets_for(
    elements: Sequence[str], energy_offsets: Mapping[str, float] | None
) -> dict[str, float]:
    offsets = DEFAULT_ENERGY_OFFSETS if energy_offsets is None else energy_offsets
    missing = [element for element in elements if element not in offsets]
    if missing:
        raise ValueError(f"energy_offsets has no offset for {', '.join(missing)}")
    return {element: float(offsets[element]) for element in elements}
