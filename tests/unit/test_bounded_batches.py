"""Bounded memory at real size (issue 16): batches by edges, small compression structures that
stop where neighbours explode, an edge-bounded force sample and a cost probe on the budget."""

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from core.evaluation.dimers import compression_curve, compression_structure
from core.science.cost import probe_cost
from core.science.inference import batch_by_edges, model_inputs, neighbourhood, predict
from core.science.preflight import force_sample
from core.science.spec import JobSpec


@pytest.fixture(scope="module")
def foundation(demo_foundation: Path) -> torch.nn.Module:
    return torch.load(demo_foundation, weights_only=False)


def copper(repeat: int = 3, vacancy: bool = False):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((repeat,) * 3)
    if vacancy:
        del atoms[5]
    atoms.positions += np.random.default_rng(0).normal(0, 0.03, atoms.positions.shape)
    return atoms


def test_batches_are_bounded_by_edges_and_an_oversized_configuration_runs_alone() -> None:
    assert batch_by_edges([10, 10, 10, 500, 10], 25) == [
        range(0, 2),
        range(2, 3),
        range(3, 4),
        range(4, 5),
    ]
    assert batch_by_edges([1] * 5, 100, max_configs=2) == [range(0, 2), range(2, 4), range(4, 5)]


def test_predictions_do_not_depend_on_the_edge_budget(foundation) -> None:
    cells = [copper(2), copper(2, vacancy=True), copper(2)]
    edges = [neighbourhood(a, float(foundation.r_max)).n_edges for a in cells]

    graphs = list(model_inputs(foundation, cells, max_edges=min(edges)))
    alone = predict(foundation, cells, max_edges=min(edges))
    together = predict(foundation, cells, max_edges=10 * sum(edges))

    assert len(graphs) == 3  # each cell above the budget, so each alone
    assert max(g["edge_index"].shape[1] for g in graphs) == max(edges)
    for a, b in zip(alone, together, strict=True):
        assert a.energy == pytest.approx(b.energy, abs=1e-8)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-8)


def test_a_large_periodic_cell_is_compressed_as_its_primitive_cell_or_a_small_cluster() -> None:
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    defective = copper(3, vacancy=True)

    primitive = compression_structure(crystal, 16)
    cluster = compression_structure(defective, 16)

    assert len(primitive) == 1 and primitive.pbc.all()
    assert primitive.get_volume() == pytest.approx(crystal.get_volume() / 108, rel=1e-6)
    assert len(cluster) == 16 and not cluster.pbc.any()
    # A compact cluster: its atoms are neighbours, not spread over the cell's faces.
    assert cluster.get_all_distances().max() < 8.0


def test_compression_stops_where_the_neighbour_count_explodes(foundation) -> None:
    cell = copper(1)  # 4 atoms: kept as it is
    full = compression_curve(foundation, cell)
    capped = compression_curve(foundation, cell, max_mean_neighbours=100)

    assert full.stopped_below is None and full.scales[0] == 0.5 and full.n_atoms == 4
    assert capped.stopped_below is not None and capped.scales[0] > 0.5
    kept = len(capped.scales)
    np.testing.assert_allclose(capped.energies_ev_per_atom, full.energies_ev_per_atom[-kept:])
    smallest = copper(1)
    smallest.set_cell(cell.cell * capped.scales[0], scale_atoms=True)
    assert neighbourhood(smallest, float(foundation.r_max)).n_edges / 4 <= 100


def test_the_force_sample_is_bounded_by_edges_but_never_empty() -> None:
    assert len(force_sample([10] * 50, 100)) == 10
    assert len(force_sample([1000, 1000], 100)) == 1
    assert force_sample([10] * 50, 100) == sorted(force_sample([10] * 50, 100))


def test_the_cost_probe_on_a_batch_above_the_budget_probes_part_and_scales_up(foundation) -> None:
    cells = [copper(2) for _ in range(4)]
    for atoms in cells:
        atoms.calc = EMT()
        atoms.get_potential_energy()
    spec = JobSpec(train_dataset="x", hyperparameters={"batch_size": 4})
    edges = neighbourhood(cells[0], float(foundation.r_max)).n_edges

    estimate = probe_cost(spec, foundation, cells, 1, n_train=8, max_edges=edges + 1)

    assert "probed on 1 of them" in estimate.basis
    assert "4.00" in estimate.basis
    assert estimate.seconds_per_step > 0 and estimate.steps_per_epoch == 2


def test_the_training_batch_is_lowered_to_fit_the_edge_budget_and_small_data_keep_theirs(
    foundation,
) -> None:
    from ase.build import molecule

    from core.workflows.mace_inputs import batch_size_for_edges

    spec = JobSpec(train_dataset="x")
    cells = [copper(3), copper(3, vacancy=True)]

    lowered, note = batch_size_for_edges(spec, cells, foundation, max_edges=8000)
    kept, none = batch_size_for_edges(spec, [molecule("CH4")] * 3, foundation, max_edges=8000)

    assert spec.hyperparameters.batch_size == 5
    assert lowered.hyperparameters.batch_size == 1
    assert note and "batch size 1 instead of 5" in note[0]
    assert kept.hyperparameters.batch_size == 5 and none == []
