"""Upload validation: what a good extxyz summarises to, and how each broken file is reported."""

import gzip
import hashlib
from pathlib import Path

import ase.io
import numpy as np
import pytest
from mace.data import KeySpecification
from mace.data.utils import load_from_xyz

from core.data.datasets import inspect_extxyz, read_configurations, write_mace_extxyz
from core.data.label_values import labels_of
from core.errors import InvalidDatasetError

FORCES = "Properties=species:S:1:pos:R:3:forces:R:3"

# Configuration 1 starts on line 1, configuration 2 on line 5, configuration 3 on line 10.
MOLECULES = f"""\
2
{FORCES} energy=-31.5 config_type=dimer pbc="F F F"
H 0.0 0.0 0.0 0.0 0.0 -0.5
H 0.0 0.0 0.74 0.0 0.0 0.5
3
{FORCES} energy=-2079.25 config_type=water pbc="F F F"
O 0.0 0.0 0.0 0.0 0.0 0.1
H 0.0 0.76 0.59 0.0 0.2 -0.05
H 0.0 -0.76 0.59 0.0 -0.2 -0.05
1
{FORCES} energy=-13.6 pbc="F F F"
H 5.0 5.0 5.0 0.0 0.0 0.0
"""

# A periodic crystal and a molecule in a vacuum box, labelled with REF_-style keys.
REF_KEYS = """\
2
Lattice="2.8 0.0 0.0 0.0 2.8 0.0 0.0 0.0 2.8" Properties=species:S:1:pos:R:3:REF_forces:R:3 \
REF_energy=-16.25 REF_stress="0.01 0.0 0.0 0.0 0.01 0.0 0.0 0.0 0.01" config_type=bulk \
pbc="T T T"
Fe 0.0 0.0 0.0 0.0 0.0 0.0
Fe 1.4 1.4 1.4 0.0 0.0 0.0
2
Lattice="20.0 0.0 0.0 0.0 20.0 0.0 0.0 0.0 20.0" \
Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=-31.5 pbc="F F F"
H 0.0 0.0 0.0 0.0 0.0 -0.5
H 0.0 0.0 0.74 0.0 0.0 0.5
"""

ISOLATED_ATOMS = """\
1
Properties=species:S:1:pos:R:3 config_type=isolated_atom energy=-13.568 pbc="F F F"
H 0.0 0.0 0.0
1
Properties=species:S:1:pos:R:3 config_type=isolated_atom energy=-2037.797 pbc="F F F"
O 0.0 0.0 0.0
"""


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "upload.xyz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def rejection(tmp_path: Path, content: str | bytes) -> str:
    with pytest.raises(InvalidDatasetError) as caught:
        inspect_extxyz(write(tmp_path, content))
    return str(caught.value)


def test_summary_counts_configurations_atoms_elements_and_config_types(tmp_path: Path) -> None:
    summary = inspect_extxyz(write(tmp_path, MOLECULES))

    assert summary.n_configs == 3
    assert summary.n_atoms == 6
    assert summary.elements == ["H", "O"]
    assert summary.element_counts == {"H": 5, "O": 1}
    assert summary.config_types == {"dimer": 1, "water": 1, "default": 1}
    assert summary.n_periodic == 0


def test_summary_names_labels_and_the_keys_the_file_uses(tmp_path: Path) -> None:
    summary = inspect_extxyz(write(tmp_path, MOLECULES))

    assert summary.labels == ["energy", "forces"]
    assert (summary.energy_key, summary.forces_key, summary.stress_key) == (
        "energy",
        "forces",
        None,
    )


def test_summary_hash_and_size_are_those_of_the_file_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, MOLECULES)

    summary = inspect_extxyz(path)

    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.size_bytes == len(path.read_bytes())
    assert summary.to_dict()["sha256"] == summary.sha256


def test_ref_prefixed_keys_are_detected(tmp_path: Path) -> None:
    summary = inspect_extxyz(write(tmp_path, REF_KEYS))

    assert (summary.energy_key, summary.forces_key, summary.stress_key) == (
        "REF_energy",
        "REF_forces",
        "REF_stress",
    )
    assert summary.labels == ["energy", "forces", "stress"]
    assert summary.n_periodic == 1
    assert summary.elements == ["H", "Fe"]


def test_stress_on_some_periodic_configurations_is_listed_with_its_count(tmp_path: Path) -> None:
    # Issue 18 item 2: mace trains stress where a configuration has it, so the summary says so.
    crystal_without_stress = REF_KEYS.replace("config_type=bulk", "").replace(
        'REF_stress="0.01 0.0 0.0 0.0 0.01 0.0 0.0 0.0 0.01"', ""
    )

    summary = inspect_extxyz(write(tmp_path, REF_KEYS + crystal_without_stress))

    assert summary.labels == ["energy", "forces", "stress"]
    assert summary.label_counts["stress"] == {"configs": 1, "of": 2}
    assert summary.stress_key == "REF_stress"
    assert any("stress or virials on 1 of 2 periodic" in w for w in summary.warnings)


def test_isolated_atoms_with_energy_only_are_accepted(tmp_path: Path) -> None:
    summary = inspect_extxyz(write(tmp_path, ISOLATED_ATOMS))

    assert summary.n_configs == 2
    assert summary.labels == ["energy"]
    assert summary.forces_key is None
    assert summary.config_types == {"isolated_atom": 2}


def test_blank_lines_between_configurations_are_tolerated(tmp_path: Path) -> None:
    spaced = MOLECULES.replace("\n3\n", "\n\n3\n")

    assert inspect_extxyz(write(tmp_path, spaced)).n_configs == 3


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    assert "empty" in rejection(tmp_path, "")
    assert "empty" in rejection(tmp_path, "\n  \n")


def test_binary_file_is_rejected_as_not_text(tmp_path: Path) -> None:
    message = rejection(tmp_path, gzip.compress(MOLECULES.encode()))

    assert "not text" in message


def test_truncated_last_configuration_is_rejected_naming_it(tmp_path: Path) -> None:
    cut_inside_water = "\n".join(MOLECULES.splitlines()[:7]) + "\n"

    message = rejection(tmp_path, cut_inside_water)

    assert message.startswith("configuration 2 (line 5): ")
    assert "truncated" in message


def test_atom_count_larger_than_its_atom_lines_is_rejected_naming_the_configuration(
    tmp_path: Path,
) -> None:
    dimer_claiming_three_atoms = MOLECULES.replace("2\n", "3\n", 1)

    message = rejection(tmp_path, dimer_claiming_three_atoms)

    assert message.startswith("configuration 1 (line 1): ")
    assert "line 5: Properties asks for 7 values per atom, found 1" in message
    assert "atom count 3" in message


def test_atom_count_smaller_than_its_atom_lines_points_at_the_configuration_before(
    tmp_path: Path,
) -> None:
    dimer_claiming_one_atom = MOLECULES.replace("2\n", "1\n", 1)

    message = rejection(tmp_path, dimer_claiming_one_atom)

    assert message.startswith("configuration 2 (line 4): expected an atom count")
    assert "configuration 1" in message


def test_non_numeric_coordinate_is_rejected_naming_the_configuration(tmp_path: Path) -> None:
    message = rejection(tmp_path, MOLECULES.replace("0.76 0.59", "0.76 O.59"))

    assert message.startswith("configuration 2 (line 5): ")
    assert "O.59" in message


def test_nan_energy_is_rejected(tmp_path: Path) -> None:
    message = rejection(tmp_path, MOLECULES.replace("energy=-2079.25", "energy=nan"))

    assert message == "configuration 2 (line 5): energy is NaN"


def test_non_numeric_energy_is_rejected(tmp_path: Path) -> None:
    message = rejection(tmp_path, MOLECULES.replace("energy=-2079.25", "energy=unknown"))

    assert message.startswith("configuration 2 (line 5): energy is not a number")


def test_missing_energy_is_rejected(tmp_path: Path) -> None:
    message = rejection(tmp_path, MOLECULES.replace(" energy=-13.6", ""))

    assert message.startswith("configuration 3 (line 10): no energy")


def test_forces_with_two_columns_are_rejected_naming_the_configuration(tmp_path: Path) -> None:
    two_columns = """\
2
Properties=species:S:1:pos:R:3:forces:R:2 energy=-31.5
H 0.0 0.0 0.0 0.0 -0.5
H 0.0 0.0 0.74 0.0 0.5
"""

    message = rejection(tmp_path, MOLECULES + two_columns)

    assert message == "configuration 4 (line 13): forces has 2 columns per atom, expected 3"


def test_missing_forces_on_a_molecule_are_rejected(tmp_path: Path) -> None:
    no_forces = """\
2
Properties=species:S:1:pos:R:3 energy=-31.5
H 0.0 0.0 0.0
H 0.0 0.0 0.74
"""

    message = rejection(tmp_path, MOLECULES + no_forces)

    assert message.startswith("configuration 4 (line 13): no forces")


def test_infinite_force_is_rejected(tmp_path: Path) -> None:
    message = rejection(tmp_path, MOLECULES.replace("0.0 -0.2 -0.05", "0.0 -inf -0.05"))

    assert message.startswith("configuration 2 (line 5): forces of atom 3 are not finite")


def test_stress_with_the_wrong_number_of_values_is_rejected(tmp_path: Path) -> None:
    message = rejection(tmp_path, REF_KEYS.replace('0.0 0.0 0.01"', '0.0"'))

    assert message.startswith("configuration 1 (line 1): REF_stress has 7 values")


def test_zero_cell_with_pbc_true_is_rejected(tmp_path: Path) -> None:
    zero_cell = (
        "1\n"
        'Lattice="0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0" Properties=species:S:1:pos:R:3 '
        'energy=-8.3 pbc="T T T"\n'
        "Fe 0.0 0.0 0.0\n"
    )

    message = rejection(tmp_path, MOLECULES + zero_cell)

    assert message.startswith("configuration 4 (line 13): cell vector a is 0 Å long")
    assert "pbc" in message


def test_zero_cell_without_pbc_is_accepted(tmp_path: Path) -> None:
    zero_cell = (
        "1\n"
        'Lattice="0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0" Properties=species:S:1:pos:R:3 '
        'energy=-8.3 pbc="F F F"\n'
        "Fe 0.0 0.0 0.0\n"
    )

    assert inspect_extxyz(write(tmp_path, zero_cell)).n_periodic == 0


def test_absurdly_large_cell_is_rejected(tmp_path: Path) -> None:
    huge = REF_KEYS.replace(
        'Lattice="2.8 0.0 0.0 0.0 2.8 0.0 0.0 0.0 2.8"',
        'Lattice="2800.0 0.0 0.0 0.0 2800.0 0.0 0.0 0.0 2800.0"',
    )

    message = rejection(tmp_path, huge)

    assert message.startswith("configuration 1 (line 1): cell volume")


def test_overlapping_atoms_are_rejected_naming_both(tmp_path: Path) -> None:
    overlapping = MOLECULES.replace("H 0.0 -0.76 0.59", "H 0.0 0.78 0.59")

    message = rejection(tmp_path, overlapping)

    assert message == "configuration 2 (line 5): atoms 2 and 3 are 0.02 Å apart"


def test_atoms_overlapping_across_the_periodic_boundary_are_rejected(tmp_path: Path) -> None:
    across_boundary = REF_KEYS.replace("Fe 1.4 1.4 1.4", "Fe 2.77 0.0 0.0")

    message = rejection(tmp_path, across_boundary)

    assert message.startswith("configuration 1 (line 1): atoms 1 and 2 are 0.03 Å apart")


def test_unknown_chemical_symbol_is_rejected(tmp_path: Path) -> None:
    message = rejection(tmp_path, MOLECULES.replace("O 0.0 0.0 0.0", "Xy 0.0 0.0 0.0"))

    assert message == "configuration 2 (line 5): unknown chemical symbol 'Xy'"


def test_dummy_atom_is_rejected_as_not_an_element(tmp_path: Path) -> None:
    message = rejection(tmp_path, MOLECULES.replace("O 0.0 0.0 0.0", "X 0.0 0.0 0.0"))

    assert message.startswith("configuration 2 (line 5): atom 1 is not a chemical element")


def test_changing_the_energy_key_midway_is_rejected(tmp_path: Path) -> None:
    mixed = MOLECULES.replace("energy=-13.6", "REF_energy=-13.6")

    message = rejection(tmp_path, mixed)

    assert message.startswith("configuration 3 (line 10): energy is stored as 'REF_energy'")


def test_labels_of_reads_calculator_and_info_keys_alike(tmp_path: Path) -> None:
    plain, ref = (read_configurations(write(tmp_path, text))[-1] for text in (MOLECULES, REF_KEYS))

    assert labels_of(plain).energy == -13.6
    assert labels_of(ref).energy == -31.5
    np.testing.assert_array_equal(labels_of(ref).forces, [[0, 0, -0.5], [0, 0, 0.5]])
    assert labels_of(ref).stress is None


def test_labels_of_expands_voigt_stress_to_a_symmetric_matrix(tmp_path: Path) -> None:
    voigt = REF_KEYS.replace(
        'REF_stress="0.01 0.0 0.0 0.0 0.01 0.0 0.0 0.0 0.01"',
        'REF_stress="1.0 2.0 3.0 4.0 5.0 6.0"',
    )

    stress = labels_of(read_configurations(write(tmp_path, voigt))[0]).stress

    # Voigt order xx yy zz yz xz xy.
    np.testing.assert_array_equal(stress, [[1, 6, 5], [6, 2, 4], [5, 4, 3]])


def test_labels_of_derives_stress_from_virials(tmp_path: Path) -> None:
    virials = REF_KEYS.replace(
        'REF_stress="0.01 0.0 0.0 0.0 0.01 0.0 0.0 0.0 0.01"',
        'REF_virials="-0.2195 0.0 0.0 0.0 -0.2195 0.0 0.0 0.0 -0.2195"',
    )

    crystal = read_configurations(write(tmp_path, virials))[0]

    # mace's convention: stress = -virials / volume.
    np.testing.assert_allclose(labels_of(crystal).stress, 0.2195 / 2.8**3 * np.eye(3))


def test_mace_copy_holds_ref_labels_equal_to_the_input_labels(tmp_path: Path) -> None:
    configs = read_configurations(write(tmp_path, MOLECULES + REF_KEYS))
    dest = tmp_path / "mace.extxyz"

    write_mace_extxyz(configs, dest)
    copies = ase.io.read(dest, index=":", format="extxyz")

    assert len(copies) == len(configs)
    for original, copy in zip(configs, copies, strict=True):
        labels = labels_of(original)
        assert copy.calc is None
        assert copy.info["REF_energy"] == pytest.approx(labels.energy, abs=1e-12)
        np.testing.assert_allclose(copy.arrays["REF_forces"], labels.forces, atol=1e-8)
        np.testing.assert_allclose(copy.positions, original.positions, atol=1e-8)
        np.testing.assert_allclose(copy.cell.array, original.cell.array, atol=1e-8)
        assert (copy.pbc == original.pbc).all()
        assert copy.info.get("config_type") == original.info.get("config_type")
    np.testing.assert_allclose(copies[3].info["REF_stress"], 0.01 * np.eye(3))
    assert "REF_stress" not in copies[0].info


def test_mace_copy_of_isolated_atoms_has_energy_and_no_forces(tmp_path: Path) -> None:
    dest = tmp_path / "mace.extxyz"

    write_mace_extxyz(read_configurations(write(tmp_path, ISOLATED_ATOMS)), dest)
    copies = ase.io.read(dest, index=":", format="extxyz")

    assert [copy.info["REF_energy"] for copy in copies] == [-13.568, -2037.797]
    assert all("REF_forces" not in copy.arrays for copy in copies)


def test_mace_reads_the_copy_with_its_default_keys(tmp_path: Path) -> None:
    dest = tmp_path / "mace.extxyz"
    write_mace_extxyz(read_configurations(write(tmp_path, REF_KEYS)), dest)

    _, loaded = load_from_xyz(str(dest), KeySpecification.from_defaults())

    crystal = loaded[0]
    assert crystal.properties["energy"] == -16.25
    np.testing.assert_allclose(crystal.properties["stress"], 0.01 * np.eye(3))
    assert crystal.property_weights["stress"] == 1.0
    assert loaded[1].property_weights["stress"] == 0.0


UNLABELLED = """\
2
pbc="F F F"
H 0.0 0.0 0.0
H 0.0 0.0 0.74
3
pbc="F F F"
O 0.0 0.0 0.0
H 0.0 0.76 0.59
H 0.0 -0.76 0.59
"""


def test_structures_without_any_label_are_accepted_as_unlabelled(tmp_path: Path) -> None:
    path = tmp_path / "structures.extxyz"
    path.write_text(UNLABELLED)

    summary = inspect_extxyz(path)

    assert summary.n_configs == 2
    assert summary.labels == []
    assert summary.energy_key is None


def test_labels_after_unlabelled_configurations_are_rejected(tmp_path: Path) -> None:
    message = rejection(tmp_path, UNLABELLED + MOLECULES)

    assert message.startswith("configuration 3 (line 10): has energy or forces")


def test_summary_names_the_elements_with_isolated_atom_references(tmp_path: Path) -> None:
    path = tmp_path / "molecules.extxyz"
    path.write_text(MOLECULES)

    assert inspect_extxyz(path).isolated_atom_elements == ["H"]
