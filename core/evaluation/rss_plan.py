"""What a random structure search runs: the settings with their preset filled in, the
compositions, and the seeded starting structures (PyXtal, core.data.random_crystals) that a model
and its foundation both start from."""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import ase
from ase.data import atomic_numbers
from ase.formula import Formula

from core.data.random_crystals import random_crystals
from core.evaluation.relaxation import RelaxSettings, StartingStructure
from core.evaluation.rss_criteria import HoleCriteria
from core.science.spec import RssHolesSettings


@dataclass(frozen=True)
class RssPreset:
    max_compositions: int
    structures_per_composition: int
    max_atoms: int
    pressures_gpa: tuple[float, ...]
    cycles: int
    relax_steps: int
    fmax_ev_per_a: float
    rattle_a: float


# "quick" runs in minutes on a CPU; "study" is Appendix A.5's size (10 compositions × 50
# structures, 3 cycles, 0.1 and 50 GPa; its step limit and force tolerance were not stated).
RSS_PRESETS: dict[str, RssPreset] = {
    "quick": RssPreset(3, 5, 8, (0.1, 50.0), 2, 100, 0.05, 0.1),
    "study": RssPreset(10, 50, 12, (0.1, 50.0), 3, 300, 0.02, 0.1),
}


@dataclass(frozen=True)
class RssPlan:
    compositions: tuple[str, ...]  # cell contents by atomic number, e.g. "Na4Cl4"
    structures_per_composition: int
    relax: RelaxSettings
    criteria: HoleCriteria
    foundation_margin: float
    processes: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rss_plan(settings: RssHolesSettings, data: Sequence[ase.Atoms] = ()) -> RssPlan:
    """The settings with the preset filled in and the compositions chosen."""
    preset = RSS_PRESETS[settings.preset]

    def pick(name: str) -> Any:
        value = getattr(settings, name)
        return getattr(preset, name) if value is None else value

    max_atoms = pick("max_atoms")
    compositions = (
        [cell_formula(Formula(text).count()) for text in settings.compositions]
        if settings.compositions
        else compositions_from_data(data, pick("max_compositions"), max_atoms)
    )
    if not compositions:
        raise ValueError("no compositions: name them, or give data with periodic or molecular ones")
    return RssPlan(
        compositions=tuple(compositions),
        structures_per_composition=pick("structures_per_composition"),
        relax=RelaxSettings(
            pressures_gpa=tuple(float(p) for p in pick("pressures_gpa")),
            cycles=pick("cycles"),
            relax_steps=pick("relax_steps"),
            fmax_ev_per_a=pick("fmax_ev_per_a"),
            rattle_a=pick("rattle_a"),
            seed=settings.seed,
        ),
        criteria=HoleCriteria(
            min_distance_fraction=settings.min_distance_fraction,
            collapsed_volume_fraction=settings.collapsed_volume_fraction,
            energy_mad_multiple=settings.energy_mad_multiple,
            energy_floor_ev_per_atom=settings.energy_floor_ev_per_atom,
            compressed_volume_fraction=settings.compressed_volume_fraction,
        ),
        foundation_margin=settings.foundation_margin,
        processes=settings.processes,
    )


def compositions_from_data(
    configs: Sequence[ase.Atoms], max_compositions: int, max_atoms: int
) -> list[str]:
    """The data's stoichiometries, most frequent first, each as many formula units as fit in
    `max_atoms` (at least one)."""
    counts: dict[str, int] = {}
    reduced: dict[str, dict[str, int]] = {}
    for atoms in configs:
        if len(atoms) < 2:
            continue  # isolated atoms say nothing about a stoichiometry
        formula = Formula.from_list(atoms.get_chemical_symbols())
        unit = formula.reduce()[0].count()
        key = cell_formula(unit)
        counts[key] = counts.get(key, 0) + 1
        reduced[key] = unit
    ranked = sorted(counts, key=lambda key: (-counts[key], key))[:max_compositions]
    chosen = []
    for key in ranked:
        unit = reduced[key]
        units_per_cell = max(1, max_atoms // sum(unit.values()))
        chosen.append(cell_formula({s: n * units_per_cell for s, n in unit.items()}))
    return chosen


def cell_formula(counts: Mapping[str, int]) -> str:
    """A canonical name of cell contents: elements by atomic number, every count written."""
    ordered = sorted(counts, key=lambda symbol: atomic_numbers[symbol])
    return "".join(f"{symbol}{counts[symbol]}" for symbol in ordered)


def starting_structures(
    compositions: Sequence[str], count: int, seed: int
) -> list[StartingStructure]:
    structures = []
    for composition in compositions:
        crystals = random_crystals(Formula(composition).count(), count, seed)
        structures += [
            StartingStructure(composition, index, c.atoms, c.space_group, c.failure)
            for index, c in enumerate(crystals)
        ]
    return structures


def structure_set_digest(structures: Sequence[StartingStructure]) -> str:
    # Imported here: core.science.cache loads mace and torch, which worker processes relaxing with
    # another calculator do not need.
    from core.science.cache import configurations_digest

    made = [s.atoms for s in structures if s.atoms is not None]
    labels = "|".join(f"{s.composition}:{s.index}:{s.failure}" for s in structures)
    return hashlib.sha256(f"{labels}|{configurations_digest(made)}".encode()).hexdigest()
