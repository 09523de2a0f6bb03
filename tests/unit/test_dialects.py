"""Issue 18: the extxyz dialects researchers' files come in are read, and what is read is said.

The files in tests/data/dialects are tiny CuAu cells written by generate.py there, each with its
labels under another dialect's keys; every one holds the same structures and labels.
"""

from pathlib import Path

import ase
import numpy as np
import pytest

from core.data.datasets import (
    inspect_extxyz,
    read_configurations,
    trained_stress_count,
    write_mace_extxyz,
    write_normalised,
)
from core.data.label_values import is_isolated_atom, labels_of
from core.data.labels import LabelKeys
from core.errors import InvalidDatasetError

DIALECTS = Path(__file__).resolve().parent.parent / "data" / "dialects"
# file -> keys the summary must name for energy, forces, stress, virials
RECOGNISED = {
    "mace_ref.extxyz": ("REF_energy", "REF_forces", "REF_stress", None),
    "janus_dft.extxyz": ("dft_energy", "dft_forces", "dft_stress", None),
    "gap_virial.extxyz": ("energy", "force", None, "virial"),
    "capitalised.extxyz": ("DFT_Energy", "DFT_Forces", "DFT_Stress", None),
}


@pytest.mark.parametrize("name", sorted(RECOGNISED))
def test_each_dialect_is_recognised_and_the_summary_names_its_keys(name: str) -> None:
    summary = inspect_extxyz(DIALECTS / name)

    keys = (summary.energy_key, summary.forces_key, summary.stress_key, summary.virials_key)
    assert keys == RECOGNISED[name]
    assert {"energy", "forces"} <= set(summary.labels)
    assert summary.label_counts["energy"] == {"configs": 6, "of": 6}
    assert summary.warnings == []


@pytest.mark.parametrize("name", sorted(RECOGNISED))
def test_each_dialect_reads_the_same_labels_as_mace_s_own_keys(name: str) -> None:
    reference = [labels_of(a) for a in read_configurations(DIALECTS / "mace_ref.extxyz")]

    read = [labels_of(a) for a in read_configurations(DIALECTS / name)]

    for ours, theirs in zip(read, reference, strict=True):
        assert ours.energy == pytest.approx(theirs.energy, abs=1e-9)
        np.testing.assert_allclose(ours.forces, theirs.forces, atol=1e-8)
        # GAP's virial (eV) becomes stress by σ = -W / V, as mace converts it.
        np.testing.assert_allclose(ours.stress, theirs.stress, atol=1e-9)


def test_a_file_whose_labels_are_under_unknown_keys_is_accepted_with_a_warning() -> None:
    summary = inspect_extxyz(DIALECTS / "custom_keys.extxyz")

    assert summary.labels == []
    assert "no energy or forces labels found" in summary.warnings[0]
    assert "pbe_energy" in summary.warnings[0] and "energy_key" in summary.warnings[0]


def test_named_keys_read_labels_under_any_name() -> None:
    keys = LabelKeys(energy_key="pbe_energy", forces_key="pbe_forces", virials_key="pbe_virials")

    summary = inspect_extxyz(DIALECTS / "custom_keys.extxyz", keys)

    assert summary.labels == ["energy", "forces", "virials"]
    assert summary.requested_keys == {
        "energy_key": "pbe_energy",
        "forces_key": "pbe_forces",
        "virials_key": "pbe_virials",
    }


def test_a_named_key_that_no_configuration_holds_is_refused() -> None:
    with pytest.raises(InvalidDatasetError, match="stress_key 'pbe_stress' is in no configuration"):
        inspect_extxyz(DIALECTS / "mace_ref.extxyz", LabelKeys(stress_key="pbe_stress"))


def test_free_energy_is_read_only_when_named() -> None:
    with pytest.raises(InvalidDatasetError, match="energy_key=free_energy"):
        inspect_extxyz(DIALECTS / "free_energy.extxyz")

    summary = inspect_extxyz(DIALECTS / "free_energy.extxyz", LabelKeys(energy_key="free_energy"))

    assert summary.energy_key == "free_energy"
    assert summary.labels == ["energy", "forces"]


def test_a_normalised_copy_reads_like_the_named_keys(tmp_path: Path) -> None:
    keys = LabelKeys(energy_key="pbe_energy", forces_key="pbe_forces", virials_key="pbe_virials")
    source = DIALECTS / "custom_keys.extxyz"

    copy = write_normalised(source, tmp_path / "copy.extxyz", keys)

    for ours, original in zip(read_configurations(copy), read_configurations(source), strict=True):
        expected = labels_of(original, keys)
        assert labels_of(ours).energy == pytest.approx(expected.energy)
        np.testing.assert_allclose(labels_of(ours).stress, expected.stress, atol=1e-12)
        assert ours.info["config_type"] == "CuAu"
        assert "pbe_energy" not in ours.info


def test_stress_on_some_periodic_configurations_is_counted_and_trained_where_present(
    tmp_path: Path,
) -> None:
    # Issue 18 item 2: 3 of 6 cells carry virials; the summary says so and training uses them.
    path = DIALECTS / "mixed_virials.extxyz"

    summary = inspect_extxyz(path)
    configs = read_configurations(path)
    write_mace_extxyz(configs, tmp_path / "train.extxyz")
    written = ase.io.read(tmp_path / "train.extxyz", index=":")

    assert summary.labels == ["energy", "forces", "virials"]
    assert summary.label_counts["virials"] == {"configs": 3, "of": 6}
    assert any("on 3 of 6 periodic configurations" in w for w in summary.warnings)
    assert trained_stress_count(configs) == 3
    assert sum("REF_stress" in atoms.info for atoms in written) == 3


def test_an_energy_only_set_is_accepted_and_says_it_cannot_train() -> None:
    summary = inspect_extxyz(DIALECTS / "energy_only.extxyz")

    assert summary.labels == ["energy"]
    assert summary.label_counts["forces"] == {"configs": 0, "of": 5}
    assert "training needs forces" in summary.warnings[0]


def test_one_atom_periodic_cells_are_crystals_not_isolated_atoms() -> None:
    configs = read_configurations(DIALECTS / "single_atoms.extxyz")

    isolated = [atoms.get_chemical_symbols()[0] for atoms in configs if is_isolated_atom(atoms)]
    one_atom_crystals = [a for a in configs if len(a) == 1 and not is_isolated_atom(a)]

    assert isolated == ["Cu", "Au"]
    assert len(one_atom_crystals) == 2 and all(a.pbc.all() for a in one_atom_crystals)


def test_a_file_of_one_atom_crystals_has_no_isolated_atom_elements(tmp_path: Path) -> None:
    crystals = [a for a in read_configurations(DIALECTS / "single_atoms.extxyz") if len(a) == 1]
    ase.io.write(tmp_path / "crystals.extxyz", crystals[:2], format="extxyz")

    summary = inspect_extxyz(tmp_path / "crystals.extxyz")

    assert summary.isolated_atom_elements == []
    assert summary.label_counts["forces"] == {"configs": 2, "of": 2}


def test_a_reference_key_wins_over_a_calculator_s_bare_prediction_and_the_choice_is_said(
    tmp_path: Path,
) -> None:
    # ASE writes an attached calculator's predictions as bare energy/forces next to REF_*.
    configs = read_configurations(DIALECTS / "mace_ref.extxyz")
    for atoms in configs:
        atoms.info["energy"] = atoms.info["REF_energy"] + 1.0
    ase.io.write(tmp_path / "both.extxyz", configs, format="extxyz")

    summary = inspect_extxyz(tmp_path / "both.extxyz")
    read = read_configurations(tmp_path / "both.extxyz")

    assert summary.energy_key == "REF_energy"
    assert labels_of(read[0]).energy == pytest.approx(configs[0].info["REF_energy"])
    assert any("holds energy under REF_energy, energy" in w for w in summary.warnings)
