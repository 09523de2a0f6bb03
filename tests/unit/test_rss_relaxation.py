"""Relax–rattle of random crystals: a broken repulsive wall shows up as a higher hole rate."""

from pathlib import Path

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.mixing import SumCalculator
from ase.io import read
from ase.neighborlist import neighbor_list
from ase.stress import full_3x3_to_voigt_6_stress

from core.evaluation.relaxation import RelaxSettings
from core.evaluation.relaxation_cache import RelaxationCache
from core.evaluation.relaxation_pool import MaceCalculatorFactory, relax_all
from core.evaluation.rss import ModelUnderTest, evaluate_rss_holes, hole_statistics
from core.evaluation.rss_criteria import HoleCriteria
from core.evaluation.rss_plan import rss_plan, starting_structures
from core.reporting.reports import render_html
from core.science.spec import RssHolesSettings

SHORT = RelaxSettings(
    pressures_gpa=(0.1,), cycles=1, relax_steps=20, fmax_ev_per_a=0.05, rattle_a=0.1, seed=0
)


class ShortRangeAttraction(Calculator):
    """-depth · exp(-r / decay) for every pair: a well where the repulsive wall should be."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, depth: float = 50.0, decay: float = 0.5, cutoff: float = 4.0) -> None:
        super().__init__()
        self.depth, self.decay, self.cutoff = depth, decay, cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        first, distance, vectors = neighbor_list("idD", self.atoms, self.cutoff)
        slope = self.depth / self.decay * np.exp(-distance / self.decay)
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, first, (slope / distance)[:, None] * vectors)
        virial = 0.5 * np.einsum("p,pa,pb->ab", slope / distance, vectors, vectors)
        energy = -0.5 * self.depth * np.exp(-distance / self.decay).sum()
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "stress": full_3x3_to_voigt_6_stress(virial / self.atoms.get_volume()),
        }


class NotANumber(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        self.results = {
            "energy": np.nan,
            "free_energy": np.nan,
            "forces": np.full((n, 3), np.nan),
            "stress": np.full(6, np.nan),
        }


def broken_emt() -> Calculator:
    # EMT's own wall is stiffer than the demo model's: it takes a deeper well to break through.
    return SumCalculator([EMT(), ShortRangeAttraction(depth=1000.0)])


def test_the_demo_foundation_made_attractive_at_short_range_has_more_holes(demo_foundation: Path):
    structures = starting_structures(["Cu4", "Ag2O2"], 3, seed=0)
    foundation = MaceCalculatorFactory(demo_foundation)

    def broken() -> Calculator:
        return SumCalculator([foundation(), ShortRangeAttraction()])

    intact_rates, _ = hole_statistics(relax_all(structures, foundation, SHORT), HoleCriteria())
    broken_rates, flagged = hole_statistics(relax_all(structures, broken, SHORT), HoleCriteria())

    assert intact_rates["0.1"]["failed"] == broken_rates["0.1"]["failed"] == 0
    assert broken_rates["0.1"]["rate"] >= intact_rates["0.1"]["rate"] + 0.3
    assert broken_rates["0.1"]["criteria"]["min_distance"] >= 3
    assert all(
        item.relaxed.min_distance_ratio < 0.5 for item in flagged if "min_distance" in item.criteria
    )


def test_a_model_returning_nan_fails_each_structure_with_a_reason():
    structures = starting_structures(["Cu2"], 2, seed=0)

    relaxed = relax_all(structures, NotANumber, SHORT)
    rates, flagged = hole_statistics(relaxed, HoleCriteria())

    assert [r.failure is not None and "non-finite" in r.failure for r in relaxed] == [True, True]
    assert rates["0.1"]["failed"] == 2 and rates["0.1"]["rate"] is None and flagged == []


def test_structures_pyxtal_cannot_make_are_counted_as_failures():
    structures = starting_structures(["Cu2", "Xx2"], 2, seed=0)

    relaxed = relax_all(structures, EMT, SHORT)
    rates, _ = hole_statistics(relaxed, HoleCriteria())

    assert rates["0.1"]["structures"] == 4 and rates["0.1"]["failed"] == 2
    assert all("unknown element" in r.failure for r in relaxed if r.composition == "Xx2")


def test_processes_give_the_same_relaxations_as_one_process():
    structures = starting_structures(["Cu2Au2"], 2, seed=3)
    settings = RelaxSettings(
        (0.1, 50.0), cycles=2, relax_steps=5, fmax_ev_per_a=0.05, rattle_a=0.1, seed=0
    )

    alone = relax_all(structures, EMT, settings, processes=1)
    shared = relax_all(structures, EMT, settings, processes=2)

    assert [r.failure for r in shared] == [None] * 4
    assert [r.energy_per_atom for r in shared] == pytest.approx([r.energy_per_atom for r in alone])


def test_the_foundation_is_relaxed_once_and_compared_side_by_side(tmp_path: Path):
    plan = rss_plan(
        RssHolesSettings(
            compositions=["Cu4"],
            structures_per_composition=3,
            pressures_gpa=[0.1],
            cycles=1,
            relax_steps=15,
            processes=1,
        )
    )
    model = ModelUnderTest("model", "broken EMT", "sha-broken", broken_emt)
    foundation = ModelUnderTest("foundation", "EMT", "sha-emt", EMT)
    cache = RelaxationCache(tmp_path / "cache")
    stages: list[str] = []

    first = evaluate_rss_holes(
        plan,
        model,
        tmp_path / "a.extxyz",
        foundation=foundation,
        cache=cache,
        on_stage=stages.append,
    )
    again = evaluate_rss_holes(
        plan, model, tmp_path / "b.extxyz", foundation=foundation, cache=cache
    )

    models = first.section["models"]
    assert models["model"]["rates"]["0.1"]["rate"] > models["foundation"]["rates"]["0.1"]["rate"]
    assert first.section["warnings"] and "0.1 GPa" in first.section["warnings"][0]
    assert stages[0] == "rss 1/3" and stages[-1] == "rss foundation 3/3"
    assert not models["model"]["cached"]
    assert again.section["models"]["model"]["cached"]
    assert again.section["models"]["foundation"]["cached"]
    assert again.section["models"] == {k: v | {"cached": True} for k, v in models.items()}
    page = render_html(
        {"title": "rss", "warnings": first.section["warnings"], "rss_holes": first.section}
    )
    assert "Random structure search" in page and "<img" in page and "too close" in page
    flagged = read(first.flagged_file, index=":")
    assert len(flagged) == first.section["flagged"] > 0
    assert {atoms.info["model"] for atoms in flagged} <= {"model", "foundation"}
    assert all(atoms.info["criteria"] for atoms in flagged)
