import ase
import numpy as np
import pytest
import torch
from mace.calculators import MACECalculator

from core.data.demo_data import generate_target_dataset
from core.data.label_values import labels_of
from core.data.structure_generation import GENERATED_SOURCES, dimers, generate, seed_structures
from core.errors import InvalidSpecError
from core.science.descriptors import structure_descriptors
from core.science.inference import predict
from core.science.replay_build import ReplayBuildInputs, build_replay_set
from core.science.selection import distinct_indices, farthest_point_indices, min_pairwise_distance

CUAU = ["Cu", "Au"]
HCNO = ["H", "C", "N", "O"]


@pytest.fixture(scope="module")
def foundation(demo_foundation) -> torch.nn.Module:
    return torch.load(demo_foundation, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def calculator(demo_foundation) -> MACECalculator:
    return MACECalculator(model_paths=str(demo_foundation), device="cpu", default_dtype="float64")


@pytest.fixture(scope="module")
def alloys() -> list[ase.Atoms]:
    return generate_target_dataset(6, seed=1, system="CuAu")


@pytest.fixture(scope="module")
def built(foundation, alloys):
    inputs = ReplayBuildInputs(CUAU, alloys, list(GENERATED_SOURCES), size=24, seed=3)
    return build_replay_set(foundation, inputs)


def test_descriptors_are_the_mean_invariant_node_features_mace_reports(
    foundation, calculator, alloys
) -> None:
    molecules = generate_target_dataset(3, seed=2, system="molecules")
    configs = alloys + molecules

    batched = structure_descriptors(foundation, configs, batch_size=4)

    one_by_one = [calculator.get_descriptors(atoms.copy()).mean(axis=0) for atoms in configs]
    np.testing.assert_allclose(batched, np.array(one_by_one), rtol=0, atol=1e-10)


def test_batched_stress_equals_the_calculators_and_only_periodic_cells_get_one(
    foundation, calculator, alloys
) -> None:
    molecule = generate_target_dataset(1, seed=2, system="molecules")[0]

    predictions = predict(foundation, [*alloys, molecule], batch_size=4, stress=True)

    for atoms, prediction in zip(alloys, predictions, strict=False):
        copy = atoms.copy()
        copy.calc = calculator
        np.testing.assert_allclose(prediction.stress, copy.get_stress(voigt=False), atol=1e-10)
    assert predictions[-1].stress is None
    assert predict(foundation, alloys[:1])[0].stress is None


def test_pseudolabels_equal_the_foundations_single_structure_predictions(built, calculator) -> None:
    assert any(atoms.pbc.all() for atoms in built.structures)
    assert any(not atoms.pbc.all() for atoms in built.structures)
    for atoms in built.structures:
        labels = labels_of(atoms)
        alone = ase.Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        alone.calc = calculator
        assert labels.energy == pytest.approx(alone.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(labels.forces, alone.get_forces(), atol=1e-9)
        if atoms.pbc.all():
            np.testing.assert_allclose(labels.stress, alone.get_stress(voigt=False), atol=1e-10)
        else:
            assert labels.stress is None


def test_the_set_reports_sources_composition_coverage_and_its_size(built) -> None:
    report = built.report

    assert len(built.structures) == report["size"] == 24 and report["cut"] is None
    assert sum(report["source_histogram"].values()) == 24
    assert {atoms.info["config_type"] for atoms in built.structures} == set(
        report["source_histogram"]
    )
    assert set(report["composition"]["element_counts"]) <= set(CUAU)
    for counts in report["sources"].values():
        assert counts["candidates"] >= counts["distinct"] >= counts["selected"]
    assert report["coverage"]["n_structures"] == 6
    assert report["coverage"]["median"] >= 0


def test_farthest_points_on_foundation_descriptors_beat_a_random_subset(foundation, alloys) -> None:
    seeds = seed_structures(alloys, CUAU)
    rng = np.random.default_rng(0)
    pool = [c.atoms for c in generate("rattle", seeds, CUAU, 120, rng, cutoff=5.0)]
    descriptors = structure_descriptors(foundation, pool)

    picked = farthest_point_indices(descriptors, 15)

    spacing = min_pairwise_distance(descriptors[picked])
    for draw in range(10):
        subset = np.random.default_rng(draw).choice(len(pool), 15, replace=False)
        assert spacing > min_pairwise_distance(descriptors[subset])


def test_near_duplicate_structures_are_removed_before_selection(foundation, alloys) -> None:
    shaken = []
    for atoms in alloys:
        copy = atoms.copy()
        copy.positions += 1e-7
        shaken.append(copy)
    pool = alloys + [atoms.copy() for atoms in alloys] + shaken
    inputs = ReplayBuildInputs(CUAU, [], [], size=len(pool), seed=0, pool=pool)

    result = build_replay_set(foundation, inputs)

    assert result.report["duplicates_removed"] == 2 * len(alloys)
    assert result.report["size"] == len(alloys)
    descriptors = structure_descriptors(foundation, result.structures)
    assert len(distinct_indices(descriptors)) == len(alloys)


def test_asking_for_more_than_the_distinct_candidates_says_what_was_cut(foundation, alloys) -> None:
    inputs = ReplayBuildInputs(CUAU, [], [], size=50, seed=0, pool=alloys + alloys)

    result = build_replay_set(foundation, inputs)

    assert result.report["size"] == len(alloys) < result.report["requested_size"] == 50
    assert "asked for 50" in result.report["cut"] and "near-duplicates" in result.report["cut"]


def test_a_pool_without_the_elements_gives_no_candidates_and_says_why(foundation) -> None:
    molecules = generate_target_dataset(4, seed=2, system="molecules")
    inputs = ReplayBuildInputs(CUAU, [], [], size=3, seed=0, pool=molecules)

    with pytest.raises(InvalidSpecError, match="pool: none of its 4 configurations"):
        build_replay_set(foundation, inputs)


def test_each_generated_source_stays_within_the_elements(alloys) -> None:
    seeds = seed_structures(alloys, CUAU)
    for index, source in enumerate(GENERATED_SOURCES):
        rng = np.random.default_rng(index)

        made = generate(source, seeds, CUAU, 10, rng, cutoff=5.0)

        assert len(made) == 10, source
        assert all(set(c.atoms.get_chemical_symbols()) <= set(CUAU) for c in made)
        assert all(c.source == source for c in made)
    slabs = generate("surface", seeds, CUAU, 5, np.random.default_rng(0), cutoff=5.0)
    assert all(list(c.atoms.pbc) == [True, True, False] for c in slabs)


def test_dimers_cover_every_pair_from_the_wall_to_the_cutoff() -> None:
    structures = dimers(HCNO, 40, cutoff=5.0)

    pairs = {tuple(sorted(atoms.get_chemical_symbols())) for atoms in structures}
    distances = [atoms.get_distance(0, 1) for atoms in structures]
    assert len(pairs) == 10
    assert min(distances) < 0.5 and 4.0 < max(distances) < 5.0


def test_molecules_alone_seed_only_the_sources_that_apply_to_them() -> None:
    molecules = generate_target_dataset(4, seed=2, system="molecules")
    seeds = seed_structures(molecules, HCNO)
    rng = np.random.default_rng(0)

    assert generate("strain", seeds, HCNO, 5, rng, cutoff=5.0) == []
    assert len(generate("rattle", seeds, HCNO, 5, rng, cutoff=5.0)) == 5


def test_without_configurations_reference_crystals_are_the_seeds() -> None:
    seeds = seed_structures([], ["Cu", "H"])

    assert [atoms.get_chemical_formula() for atoms in seeds] == ["Cu"]


def test_fps_replay_subsampling_picks_what_the_shared_selection_picks(
    registered_demo_foundation, foundation, alloys, tmp_path
) -> None:
    from core.data.demo_data import write_extxyz
    from core.science.pseudolabels import pseudolabelled
    from core.science.replay import prepare_replay_file
    from core.science.spec import ReplaySpec

    seeds = seed_structures(alloys, CUAU)
    pool = [
        c.atoms for c in generate("strain", seeds, CUAU, 30, np.random.default_rng(1), cutoff=5.0)
    ]
    source = write_extxyz(pool, tmp_path / "pool.extxyz")

    replay = prepare_replay_file(
        ReplaySpec(dataset="pool", num_samples=6, selection="fps"),
        source,
        tmp_path / "replay.extxyz",
        pseudolabels=lambda configs: pseudolabelled(configs, foundation, "sha"),
        foundation=registered_demo_foundation,
        seed=2,
    )

    expected = sorted(farthest_point_indices(structure_descriptors(foundation, pool), 6, seed=2))
    chosen = ase.io.read(replay.path, index=":")
    assert replay.n_configs == 6 and replay.selection == "fps"
    for index, atoms in zip(expected, chosen, strict=True):
        np.testing.assert_allclose(atoms.positions, pool[index].positions, atol=1e-6)
    # The replayed structures carry the foundation's own labels, ready for mace's replay head
    # (to the 8 decimals extxyz keeps).
    labels = predict(foundation, [pool[index] for index in expected])
    for atoms, label in zip(chosen, labels, strict=True):
        assert atoms.info["REF_energy"] == pytest.approx(label.energy, abs=1e-6)
        np.testing.assert_allclose(atoms.arrays["REF_forces"], label.forces, atol=1e-6)


def test_pool_configurations_with_other_elements_are_left_out_and_counted(
    foundation, alloys
) -> None:
    molecules = generate_target_dataset(4, seed=2, system="molecules")
    inputs = ReplayBuildInputs(CUAU, [], [], size=3, seed=0, pool=alloys + molecules)

    result = build_replay_set(foundation, inputs)

    assert result.report["sources"]["pool"]["candidates"] == len(alloys)
    assert (
        "left out 4 configurations with other elements" in result.report["skipped_sources"]["pool"]
    )
