"""Write the committed dialect files: tiny CuAu cells (EMT + per-element offsets,
core.data.demo_data)
with their labels under the keys MACE, janus-core, GAP and ASE users' files carry.

Run from the repository root: python tests/data/dialects/generate.py
"""

from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk

from core.data.demo_data import generate_target_dataset

HERE = Path(__file__).resolve().parent
N_FRAMES = 6


def labelled_cells(seed: int) -> list[tuple[Atoms, float, np.ndarray, np.ndarray]]:
    """(structure, energy eV, forces eV/Å, stress 3x3 eV/Å^3) of small periodic CuAu cells."""
    cells = []
    for atoms in generate_target_dataset(N_FRAMES, seed=seed, system="CuAu"):
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress(voigt=False)
        bare = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
        bare.info["config_type"] = "CuAu"
        cells.append((bare, energy, forces, stress))
    return cells


def dialect(
    prefix: str,
    energy: str,
    forces: str,
    stress: str | None,
    virials: str | None,
    seed: int = 7,
    every: int = 1,
) -> list[Atoms]:
    configs = []
    for index, (atoms, e, f, s) in enumerate(labelled_cells(seed)):
        atoms = atoms.copy()
        atoms.info[prefix + energy] = e
        atoms.new_array(prefix + forces, f)
        if index % every == 0:
            if stress is not None:
                atoms.info[prefix + stress] = s.ravel()
            if virials is not None:
                atoms.info[prefix + virials] = (-s * atoms.get_volume()).ravel()
        configs.append(atoms)
    return configs


def write(name: str, configs: list[Atoms]) -> None:
    # info/arrays names that ASE would move into a calculator are written as given: the
    # writer only renames calculator results, and these atoms carry none.
    ase.io.write(HERE / name, configs, format="extxyz")


def energy_only_scan() -> list[Atoms]:
    """A Cu-Au bond scan in vacuum: energies, no forces (as dihedral scans come)."""
    from ase.calculators.emt import EMT

    configs = []
    for distance in (2.2, 2.4, 2.6, 2.8, 3.0):
        atoms = Atoms("CuAuCu", positions=[(0, 0, 0), (distance, 0, 0), (distance, 2.5, 0)])
        atoms.center(vacuum=6.0)
        atoms.calc = EMT()
        energy = atoms.get_potential_energy() - 2.9 * 2 - 2.3
        bare = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=False)
        bare.info["energy"] = energy
        bare.info["config_type"] = "scan"
        configs.append(bare)
    return configs


def single_atoms() -> list[Atoms]:
    """Multi-atom cells, two 1-atom periodic Cu crystals and isolated Cu and Au atoms."""
    from ase.calculators.emt import EMT

    configs = dialect("REF_", "energy", "forces", "stress", None, seed=11)
    for a in (3.55, 3.65):
        crystal = bulk("Cu", "fcc", a=a)
        crystal.calc = EMT()
        e, f, s = crystal.get_potential_energy(), crystal.get_forces(), crystal.get_stress()
        bare = Atoms(crystal.numbers, crystal.positions, cell=crystal.cell, pbc=True)
        bare.info.update(REF_energy=e - 2.9, REF_stress=s, config_type="bulk")
        bare.new_array("REF_forces", f)
        configs.append(bare)
    for symbol, offset, kind in (("Cu", -2.9, "IsolatedAtom"), ("Au", -2.3, "IsolatedAtom")):
        atom = Atoms(symbol, positions=[(0, 0, 0)], pbc=False)
        atom.calc = EMT()
        bare = Atoms(symbol, positions=[(0, 0, 0)], pbc=False)
        bare.info.update(REF_energy=atom.get_potential_energy() + offset, config_type=kind)
        configs.append(bare)
    return configs


def main() -> None:
    write("mace_ref.extxyz", dialect("REF_", "energy", "forces", "stress", None))
    write("janus_dft.extxyz", dialect("dft_", "energy", "forces", "stress", None))
    write("gap_virial.extxyz", dialect("", "energy", "force", None, "virial"))
    write("capitalised.extxyz", dialect("DFT_", "Energy", "Forces", "Stress", None))
    write("free_energy.extxyz", dialect("", "free_energy", "forces", None, None))
    write("custom_keys.extxyz", dialect("pbe_", "energy", "forces", None, "virials"))
    write("mixed_virials.extxyz", dialect("REF_", "energy", "forces", None, "virials", every=2))
    write("energy_only.extxyz", energy_only_scan())
    write("single_atoms.extxyz", single_atoms())


if __name__ == "__main__":
    main()
