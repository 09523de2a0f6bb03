"""Random-structure-search "holes" (science.md §3; arXiv 2606.12704, Appendix A.5).

A model can reach a low test error while its energy surface grows unphysical minima at short
distance or collapsed volume, which a structure search or a hot MD run falls into. The test:
random crystals (PyXtal, core.data.random_crystals) are relaxed under a target pressure (cell and
positions, ASE's FrechetCellFilter with FIRE), rattled and relaxed again for a number of cycles,
and each relaxed structure is flagged if any of the study's four criteria holds (see
`flag_holes`). The same seed gives the same starting structures, so a fine-tuned model and its
foundation are compared on identical inputs.

Choices the study did not state, documented in docs/evaluation.md: FIRE as the optimizer;
`cycles` counts relaxations (rattles happen between them); the rattle moves atoms only, by a
Gaussian of `rattle_a` per Cartesian component; energy criteria use the potential energy per
atom (not the enthalpy); medians are the model's own, per composition and pressure.
"""

import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import current_process, get_context
from pathlib import Path
from typing import Any

import ase
import numpy as np
from ase import units
from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers, covalent_radii
from ase.filters import FrechetCellFilter
from ase.formula import Formula
from ase.io import write
from ase.neighborlist import neighbor_list
from ase.optimize import FIRE
from threadpoolctl import threadpool_limits

from core.data.random_crystals import random_crystals
from core.errors import InvalidSpecError
from core.registry.foundations import (
    FoundationModel,
    ModelSource,
    load_model_source,
    model_source_sha256,
)
from core.science.spec import RssHolesSettings

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
CRITERIA = ("min_distance", "collapsed_volume", "low_energy", "compressed_low_energy")
# Bumped whenever relaxation changes, so cached results of an older procedure are not reused.
PROCEDURE_VERSION = "rss-1"
# Below this a cell has collapsed whatever the composition; relaxing further only makes the
# neighbour lists explode.
COLLAPSED_VOLUME_PER_ATOM_A3 = 0.5
WORKER_FAILURE = "worker process failed"


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
class HoleCriteria:
    """The study's four criteria; each threshold is a parameter."""

    min_distance_fraction: float = 0.5  # of the sum of covalent radii
    collapsed_volume_fraction: float = 0.3  # of the median volume per atom
    energy_mad_multiple: float = 10.0
    energy_floor_ev_per_atom: float = 5.0  # the energy threshold is never closer to the median
    compressed_volume_fraction: float = 0.5  # together with an energy below the median


@dataclass(frozen=True)
class RelaxSettings:
    pressures_gpa: tuple[float, ...]
    cycles: int
    relax_steps: int
    fmax_ev_per_a: float
    rattle_a: float
    seed: int


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


@dataclass(frozen=True)
class StartingStructure:
    composition: str
    index: int
    atoms: ase.Atoms | None
    space_group: int | None
    failure: str | None


@dataclass(frozen=True)
class Relaxed:
    """One starting structure relaxed at one pressure, or why that failed."""

    composition: str
    index: int
    pressure_gpa: float
    space_group: int | None
    atoms: ase.Atoms | None = field(default=None, repr=False)
    energy_per_atom: float | None = None
    volume_per_atom: float | None = None
    min_distance_ratio: float | None = None  # closest pair over its covalent radii sum
    steps: int = 0
    failure: str | None = None


# ---- the plan --------------------------------------------------------------------------------


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


# ---- criteria: pure functions ----------------------------------------------------------------


def min_distance_ratio(atoms: ase.Atoms) -> float | None:
    """Closest pair (periodic images included) over the sum of its covalent radii; None when no
    pair is closer than that sum."""
    if len(atoms) == 0:
        return None
    if atoms.pbc.any() and abs(atoms.cell.volume) / len(atoms) < 1e-3:
        return 0.0
    radii = covalent_radii[atoms.numbers]
    first, second, distance = neighbor_list("ijd", atoms, 2.0 * float(radii.max()))
    if len(distance) == 0:
        return None
    ratios = distance / (radii[first] + radii[second])
    smallest = float(ratios.min())
    return smallest if smallest < 1.0 else None


def too_close(ratio: float | None, criteria: HoleCriteria) -> bool:
    return ratio is not None and ratio < criteria.min_distance_fraction


def collapsed_volume(volume: float, median_volume: float, criteria: HoleCriteria) -> bool:
    return volume < criteria.collapsed_volume_fraction * median_volume


def energy_threshold(median_energy: float, mad: float, criteria: HoleCriteria) -> float:
    """Energies per atom below this are holes: 10 MADs below the median, at least 5 eV/atom."""
    return median_energy - max(
        criteria.energy_mad_multiple * mad, criteria.energy_floor_ev_per_atom
    )


def compressed_low_energy(
    volume: float, median_volume: float, energy: float, median_energy: float, criteria: HoleCriteria
) -> bool:
    return volume < criteria.compressed_volume_fraction * median_volume and energy < median_energy


def flag_holes(
    energies_per_atom: Sequence[float],
    volumes_per_atom: Sequence[float],
    distance_ratios: Sequence[float | None],
    criteria: HoleCriteria = HoleCriteria(),
) -> list[list[str]]:
    """The criteria each structure meets, against the medians of this group (one composition at
    one pressure, every structure relaxed by the same model)."""
    energies = np.asarray(energies_per_atom, dtype=float)
    volumes = np.asarray(volumes_per_atom, dtype=float)
    if len(energies) == 0:
        return []
    median_energy = float(np.median(energies))
    mad = float(np.median(np.abs(energies - median_energy)))
    median_volume = float(np.median(volumes))
    threshold = energy_threshold(median_energy, mad, criteria)
    flags = []
    for energy, volume, ratio in zip(energies, volumes, distance_ratios, strict=True):
        met = {
            "min_distance": too_close(ratio, criteria),
            "collapsed_volume": collapsed_volume(volume, median_volume, criteria),
            "low_energy": bool(energy < threshold),
            "compressed_low_energy": compressed_low_energy(
                volume, median_volume, energy, median_energy, criteria
            ),
        }
        flags.append([name for name in CRITERIA if met[name]])
    return flags


# ---- relaxation ------------------------------------------------------------------------------


class _NotFinite(Exception):
    pass


def relax_rattle(
    start: StartingStructure,
    calculator: Calculator,
    pressure_gpa: float,
    settings: RelaxSettings,
) -> Relaxed:
    """Relax cell and positions at `pressure_gpa`, then rattle and relax again, `cycles` times."""
    base = Relaxed(start.composition, start.index, pressure_gpa, start.space_group)
    if start.atoms is None:
        return replace(base, failure=f"no starting structure: {start.failure}")
    rng = np.random.default_rng(
        [
            settings.seed,
            start.index,
            _digest_int(start.composition),
            int(round(pressure_gpa * 1000)),
        ]
    )
    atoms = start.atoms.copy()
    atoms.calc = calculator
    steps = 0
    try:
        for cycle in range(settings.cycles):
            if cycle > 0:
                atoms.positions += rng.normal(0.0, settings.rattle_a, atoms.positions.shape)
            steps += _relax(atoms, pressure_gpa, settings)
            if _volume_per_atom(atoms) < COLLAPSED_VOLUME_PER_ATOM_A3:
                break
        energy = float(atoms.get_potential_energy())
        if not math.isfinite(energy):
            raise _NotFinite("the model returned a non-finite energy after relaxing")
    except _NotFinite as error:
        return replace(base, steps=steps, failure=str(error))
    except Exception as error:  # a model or an optimizer can fail in many ways; record it
        return replace(base, steps=steps, failure=f"{type(error).__name__}: {error}")
    result = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    return replace(
        base,
        atoms=result,
        energy_per_atom=energy / len(atoms),
        volume_per_atom=_volume_per_atom(atoms),
        min_distance_ratio=min_distance_ratio(result),
        steps=steps,
    )


def _relax(atoms: ase.Atoms, pressure_gpa: float, settings: RelaxSettings) -> int:
    cell_filter = FrechetCellFilter(atoms, scalar_pressure=pressure_gpa * units.GPa)
    optimizer = FIRE(cell_filter, logfile=None)
    for _converged in optimizer.irun(fmax=settings.fmax_ev_per_a, steps=settings.relax_steps):
        # irun yields after the forces of the current geometry are known: a NaN stops here,
        # before the optimizer moves atoms to NaN positions.
        results = atoms.calc.results
        quantities = ("energy", "forces", "stress")
        if not all(np.all(np.isfinite(results[k])) for k in quantities if k in results):
            raise _NotFinite(
                f"the model returned a non-finite energy, forces or stress at step "
                f"{optimizer.nsteps}"
            )
        if _volume_per_atom(atoms) < COLLAPSED_VOLUME_PER_ATOM_A3:
            break
    steps: int = optimizer.nsteps
    return steps


def _volume_per_atom(atoms: ase.Atoms) -> float:
    return abs(float(atoms.cell.volume)) / len(atoms)


def _digest_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


# ---- many structures, several processes ------------------------------------------------------


@dataclass(frozen=True)
class MaceCalculatorFactory:
    """Builds the model's ASE calculator inside each worker process (picklable)."""

    # A registered foundation (checked against its pin in each process) or a job's model.
    model: ModelSource
    device: str = "cpu"

    def __call__(self) -> Calculator:
        from mace.calculators import MACECalculator

        model = load_model_source(self.model, self.device)
        return MACECalculator(models=model, device=self.device, default_dtype="float64")


_process_calculator: Calculator | None = None


@contextmanager
def single_threaded() -> Iterator[None]:
    """One thread for torch and for BLAS while a few-atom structure relaxes.

    The cell filter's 3×3 matrix exponentials and a MACE pass over a handful of atoms are far too
    small to share: with threads on a busy machine a step took 50× longer (measured: 0.8 s
    against 15 ms for 4 atoms of the demo model on a loaded 2-core machine). Parallelism comes
    from processes instead.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(previous)


def _start_process(factory: Callable[[], Calculator]) -> None:
    global _process_calculator
    threadpool_limits(1)  # for the life of this worker process
    _process_calculator = factory()
    torch = sys.modules.get("torch")  # loaded by a MACE calculator; not worth importing otherwise
    if torch is not None:
        torch.set_num_threads(1)


def _relax_in_process(
    start: StartingStructure, pressure: float, settings: RelaxSettings
) -> Relaxed:
    assert _process_calculator is not None
    return relax_rattle(start, _process_calculator, pressure, settings)


def relax_all(
    structures: Sequence[StartingStructure],
    calculator_factory: Callable[[], Calculator],
    settings: RelaxSettings,
    *,
    processes: int | None = 1,
    on_progress: ProgressCallback | None = None,
) -> list[Relaxed]:
    """Every structure at every pressure, in a stable order; `processes` None uses every core."""
    tasks = [(s, p) for p in settings.pressures_gpa for s in structures]
    report = on_progress or (lambda _done, _total: None)
    workers = min(processes or os.cpu_count() or 1, max(1, len(tasks)))
    if workers > 1 and current_process().daemon:
        # A daemonic process (a prefork Celery child) may not start processes of its own.
        logger.warning("rss: running in a daemonic process; relaxing in one process")
        workers = 1
    results: list[Relaxed | None] = [None] * len(tasks)
    if workers == 1:
        calculator = calculator_factory()
        for position, (start, pressure) in enumerate(tasks):
            with single_threaded():
                results[position] = relax_rattle(start, calculator, pressure, settings)
            report(position + 1, len(tasks))
        return [r for r in results if r is not None]
    # spawn, not fork: a forked copy of a process that already ran torch's thread pools can hang.
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_start_process,
        initargs=(calculator_factory,),
    ) as pool:
        futures = {
            pool.submit(_relax_in_process, start, pressure, settings): position
            for position, (start, pressure) in enumerate(tasks)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            position = futures[future]
            try:
                results[position] = future.result()
            except Exception as error:  # a worker process that died takes its task with it
                start, pressure = tasks[position]
                results[position] = Relaxed(
                    start.composition,
                    start.index,
                    pressure,
                    start.space_group,
                    failure=f"{WORKER_FAILURE}: {type(error).__name__}: {error}",
                )
            report(done, len(tasks))
    return [r for r in results if r is not None]


# ---- statistics ------------------------------------------------------------------------------


def _measured(value: float | None) -> float:
    # A relaxation that did not fail measured its result; None here is a bug, not a hole.
    if value is None:
        raise ValueError("a relaxed structure without a failure has no energy or volume")
    return value


@dataclass(frozen=True)
class Flagged:
    relaxed: Relaxed
    criteria: list[str]


def hole_statistics(
    relaxed: Sequence[Relaxed], criteria: HoleCriteria
) -> tuple[dict[str, Any], list[Flagged]]:
    """Hole rates per pressure, per criterion and per composition, and the flagged structures."""
    flagged: list[Flagged] = []
    rates: dict[str, Any] = {}
    for pressure in sorted({r.pressure_gpa for r in relaxed}):
        at_pressure = [r for r in relaxed if r.pressure_gpa == pressure]
        per_composition: dict[str, Any] = {}
        for composition in sorted({r.composition for r in at_pressure}):
            group = [r for r in at_pressure if r.composition == composition]
            done = [r for r in group if r.failure is None]
            flags = flag_holes(
                [_measured(r.energy_per_atom) for r in done],
                [_measured(r.volume_per_atom) for r in done],
                [r.min_distance_ratio for r in done],
                criteria,
            )
            flagged += [Flagged(r, met) for r, met in zip(done, flags, strict=True) if met]
            per_composition[composition] = _counts(len(group), flags)
        rates[f"{pressure:g}"] = _total(per_composition) | {"compositions": per_composition}
    return rates, flagged


def _counts(structures: int, flags: list[list[str]]) -> dict[str, Any]:
    holes = sum(1 for met in flags if met)
    return {
        "structures": structures,
        "relaxed": len(flags),
        "failed": structures - len(flags),
        "holes": holes,
        "rate": holes / len(flags) if flags else None,
        "criteria": {name: sum(1 for met in flags if name in met) for name in CRITERIA},
    }


def _total(per_composition: dict[str, Any]) -> dict[str, Any]:
    groups = list(per_composition.values())
    relaxed = sum(g["relaxed"] for g in groups)
    holes = sum(g["holes"] for g in groups)
    return {
        "structures": sum(g["structures"] for g in groups),
        "relaxed": relaxed,
        "failed": sum(g["failed"] for g in groups),
        "holes": holes,
        "rate": holes / relaxed if relaxed else None,
        "criteria": {name: sum(g["criteria"][name] for g in groups) for name in CRITERIA},
    }


# ---- cache -----------------------------------------------------------------------------------


class RelaxationCache:
    """Relaxed structures per (model file, starting structures, relaxation settings): the
    foundation's are computed once and reused by every job and evaluation compared with it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key(self, model_sha256: str, structure_set: str, settings: RelaxSettings) -> str:
        text = json.dumps([PROCEDURE_VERSION, model_sha256, structure_set, asdict(settings)])
        return hashlib.sha256(text.encode()).hexdigest()

    def load(self, key: str) -> list[Relaxed] | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        logger.info("cache hit: rss relaxations %s", key[:12])
        return [_relaxed_from_dict(entry) for entry in json.loads(path.read_text())]

    def store(self, key: str, relaxed: Sequence[Relaxed]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.json"
        # Write then rename, so concurrent workers never read half a file.
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps([_relaxed_to_dict(r) for r in relaxed]))
        partial.replace(path)


def _relaxed_to_dict(relaxed: Relaxed) -> dict[str, Any]:
    values = {k: v for k, v in relaxed.__dict__.items() if k != "atoms"}
    atoms = relaxed.atoms
    if atoms is not None:
        values["atoms"] = {
            "numbers": atoms.numbers.tolist(),
            "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(),
        }
    return values


def _relaxed_from_dict(values: dict[str, Any]) -> Relaxed:
    stored = values.pop("atoms", None)
    atoms = None if stored is None else ase.Atoms(**stored, pbc=True)
    return Relaxed(**values, atoms=atoms)


# ---- the evaluation --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelUnderTest:
    label: str  # "model" or "foundation"
    name: str  # what the report calls it: a job id, a foundation name
    sha256: str
    calculator_factory: Callable[[], Calculator]


@dataclass(frozen=True)
class RssOutcome:
    section: dict[str, Any]
    flagged_file: Path


def _progress_stage(stage: Callable[[str], None], prefix: str) -> ProgressCallback:
    def report(done: int, total: int) -> None:
        stage(f"{prefix} {done}/{total}")

    return report


def evaluate_rss_holes(
    plan: RssPlan,
    model: ModelUnderTest,
    flagged_file: Path,
    *,
    foundation: ModelUnderTest | None = None,
    cache: RelaxationCache | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RssOutcome:
    """Hole rates of `model` (and of its foundation on the same starting structures), the
    flagged structures written to `flagged_file` as extxyz."""
    stage = on_stage or (lambda _name: None)
    structures = starting_structures(
        plan.compositions, plan.structures_per_composition, plan.relax.seed
    )
    structure_set = structure_set_digest(structures)
    models = [model] + ([foundation] if foundation is not None else [])
    section: dict[str, Any] = {
        "settings": plan.to_dict(),
        "structure_set": structure_set,
        "compositions": list(plan.compositions),
        "models": {},
        "failures": [],
        "warnings": [],
    }
    all_flagged: list[tuple[str, Flagged]] = []
    for candidate in models:
        key = cache.key(candidate.sha256, structure_set, plan.relax) if cache else None
        relaxed = cache.load(key) if cache and key else None
        cached = relaxed is not None
        if relaxed is None:
            prefix = "rss" if candidate.label == "model" else "rss foundation"
            relaxed = relax_all(
                structures,
                candidate.calculator_factory,
                plan.relax,
                processes=plan.processes,
                on_progress=_progress_stage(stage, prefix),
            )
            # A worker process that died is the machine's fault, not the model's: never cached.
            if cache and key and not any(_lost_with_worker(r) for r in relaxed):
                cache.store(key, relaxed)
        rates, flagged = hole_statistics(relaxed, plan.criteria)
        section["models"][candidate.label] = {
            "name": candidate.name,
            "cached": cached,
            "rates": rates,
        }
        section["failures"] += [
            {
                "model": candidate.label,
                "composition": r.composition,
                "index": r.index,
                "pressure_gpa": r.pressure_gpa,
                "reason": r.failure,
            }
            for r in relaxed
            if r.failure is not None
        ]
        all_flagged += [(candidate.label, f) for f in flagged]
    if foundation is not None:
        section["warnings"] = rate_warnings(section["models"], plan.foundation_margin)
    section["flagged"] = len(all_flagged)
    write_flagged(all_flagged, flagged_file)
    return RssOutcome(section, flagged_file)


def _lost_with_worker(relaxed: Relaxed) -> bool:
    return relaxed.failure is not None and relaxed.failure.startswith(WORKER_FAILURE)


def rate_warnings(models: dict[str, Any], margin: float) -> list[str]:
    """A warning per pressure where the model's hole rate exceeds the foundation's by more than
    `margin` (absolute: 0.05 is five percentage points)."""
    warnings = []
    own, base = models["model"]["rates"], models["foundation"]["rates"]
    for pressure, rates in own.items():
        rate, foundation_rate = rates["rate"], (base.get(pressure) or {}).get("rate")
        if rate is None or foundation_rate is None or math.isnan(rate):
            continue
        if rate > foundation_rate + margin:
            warnings.append(
                f"random structure search at {pressure} GPa: hole rate {rate:.0%} against the "
                f"foundation's {foundation_rate:.0%} on the same structures (more than "
                f"{100 * margin:g} percentage points above); the repulsive wall may be broken: "
                "consider a replay strategy"
            )
    return warnings


def write_flagged(flagged: Sequence[tuple[str, Flagged]], path: Path) -> None:
    frames = []
    for label, item in flagged:
        relaxed = item.relaxed
        assert relaxed.atoms is not None
        atoms = relaxed.atoms.copy()
        atoms.info.update(
            model=label,
            composition=relaxed.composition,
            index=relaxed.index,
            pressure_gpa=relaxed.pressure_gpa,
            space_group=relaxed.space_group or 0,
            energy_per_atom=relaxed.energy_per_atom,
            volume_per_atom=relaxed.volume_per_atom,
            criteria=",".join(item.criteria),
        )
        frames.append(atoms)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, frames, format="extxyz") if frames else path.write_text("")


# ---- the stage of a job or an evaluation -----------------------------------------------------

FLAGGED_FILE_NAME = "rss-holes.extxyz"


def rss_holes_stage(
    settings: RssHolesSettings,
    data: Sequence[ase.Atoms],
    model_source: ModelSource,
    flagged_file: Path,
    *,
    model_name: str,
    foundation: FoundationModel | None = None,
    cache_folder: Path | None = None,
    device: str = "cpu",
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The report section for the model `model_source`, beside `foundation` when given (and
    not the same file); compositions from `data` unless the settings name them."""
    try:
        plan = rss_plan(settings, data)
    except ValueError as error:
        raise InvalidSpecError(f"rss_holes: {error}") from error
    sha256 = model_source_sha256(model_source)
    model = ModelUnderTest("model", model_name, sha256, MaceCalculatorFactory(model_source, device))
    reference = None
    if foundation is not None and foundation.sha256 != sha256:
        reference = ModelUnderTest(
            "foundation",
            foundation.name,
            foundation.sha256,
            MaceCalculatorFactory(foundation, device),
        )
    outcome = evaluate_rss_holes(
        plan,
        model,
        flagged_file,
        foundation=reference,
        cache=RelaxationCache(cache_folder) if cache_folder is not None else None,
        on_stage=on_stage,
    )
    logger.info(
        "rss holes model=%s structure_set=%s flagged=%d",
        model_name,
        outcome.section["structure_set"][:12],
        outcome.section["flagged"],
    )
    return outcome.section
