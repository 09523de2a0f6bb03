"""Random-structure-search "holes" (science.md §3; arXiv 2606.12704, Appendix A.5).

A model can reach a low test error while its energy surface grows unphysical minima at short
distance or collapsed volume, which a structure search or a hot MD run falls into. The test:
random crystals (PyXtal, core.data.random_crystals) are relaxed under a target pressure (cell and
positions, ASE's FrechetCellFilter with FIRE), rattled and relaxed again for a number of cycles,
and each relaxed structure is flagged if any of the study's four criteria holds (see
`flag_holes`). The same seed gives the same starting structures, so a fine-tuned model and its
foundation are compared on identical inputs.

The pieces, one module each: the plan and starting structures (rss_plan), the criteria
(rss_criteria), relaxing one structure (relaxation), many over processes (relaxation_pool) and
the cache of relaxed structures (relaxation_cache). Choices the study did not state are
documented in docs/science-and-evaluation.md; energy criteria use the potential energy per atom
(not the enthalpy); medians are the model's own, per composition and pressure.
"""

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase
from ase.calculators.calculator import Calculator
from ase.io import write

from core.errors import InvalidSpecError
from core.evaluation.relaxation import Relaxed
from core.evaluation.relaxation_cache import RelaxationCache
from core.evaluation.relaxation_pool import (
    MaceCalculatorFactory,
    ProgressCallback,
    lost_with_worker,
    relax_all,
)
from core.evaluation.rss_criteria import CRITERIA, HoleCriteria, flag_holes
from core.evaluation.rss_plan import RssPlan, rss_plan, starting_structures, structure_set_digest
from core.registry.foundations import FoundationModel, ModelSource, model_source_sha256
from core.science.spec import RssHolesSettings

logger = logging.getLogger(__name__)


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
            if cache and key and not any(lost_with_worker(r) for r in relaxed):
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
