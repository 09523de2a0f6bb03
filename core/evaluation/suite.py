"""The evaluation stage: every measurement of one model, as the report's sections.

Each section is built as its core.reporting.report_models model; `evaluate_model` returns them as
the JSON stored with the job or evaluation, which core.reporting.reports renders and
core.workflows.sweeps compares.
"""

from dataclasses import dataclass
from typing import Any

import ase
import torch
from ase.data import chemical_symbols

from core.evaluation.accuracy import AccuracyMetrics, accuracy
from core.evaluation.dimers import Repulsion, short_range_repulsion
from core.evaluation.forgetting import Forgetting, forgetting
from core.evaluation.md_plan import DEFAULT_MD_BUDGET_S
from core.evaluation.md_section import StageCallback, StepsCallback, md_outcome
from core.evaluation.rdf import compare_rdfs, radial_distribution
from core.evaluation.unmeasured import attempt, require_known_elements, unknown_elements
from core.registry import mace_model
from core.reporting.report_models import (
    AccuracyReport,
    CompressionCurveReport,
    DimerCurveReport,
    DimersReport,
    EvaluationSections,
    ForgettingReport,
    MDRunReport,
    OffsetFreeEnergiesReport,
    ParityReport,
    ParityValues,
    RdfPairReport,
    RdfReport,
    ReplayErrors,
)
from core.science.spec import EvaluationSettings

# Forgetting is a model's error on pretraining-like data relative to its foundation's.
NO_FOUNDATION = "no foundation to compare with: a model trained from scratch has nothing to forget"


@dataclass(frozen=True)
class EvaluationData:
    test: list[ase.Atoms] | None
    replay: list[ase.Atoms] | None = None
    reference: list[ase.Atoms] | None = None


def evaluate_model(
    model: torch.nn.Module,
    data: EvaluationData,
    settings: EvaluationSettings,
    *,
    foundation: torch.nn.Module | None = None,
    on_stage: StageCallback | None = None,
    on_steps: StepsCallback | None = None,
    device: str = "cpu",
    md_budget_s: float = DEFAULT_MD_BUDGET_S,
) -> dict[str, Any]:
    """The sections of `evaluate`, as the JSON stored with the job or evaluation."""
    return evaluate(
        model,
        data,
        settings,
        foundation=foundation,
        on_stage=on_stage,
        on_steps=on_steps,
        device=device,
        md_budget_s=md_budget_s,
    ).to_json()


def evaluate(
    model: torch.nn.Module,
    data: EvaluationData,
    settings: EvaluationSettings,
    *,
    foundation: torch.nn.Module | None = None,
    on_stage: StageCallback | None = None,
    on_steps: StepsCallback | None = None,
    device: str = "cpu",
    md_budget_s: float = DEFAULT_MD_BUDGET_S,
) -> EvaluationSections:
    """Every measurement the settings ask for; a section is left unset when it did not run, and
    named with its reason in `not_measured` when it could not (core.evaluation.unmeasured).
    `md_budget_s`: wall seconds for MD runs whose length the settings leave open
    (core.evaluation.md_plan.md_budget_s)."""
    stage = on_stage or (lambda _name: None)
    report = EvaluationSections()
    skipped: dict[str, str] = {}
    models = {"model": model}
    if data.test:
        stage("evaluating accuracy")

        def test_accuracy() -> AccuracyReport:
            require_known_elements(models, data.test or [], "test data")
            return accuracy_section(accuracy(model, data.test or [], device=device))

        if (measured := attempt("accuracy", skipped, test_accuracy)) is not None:
            report.accuracy = {"test": measured}
    if data.replay and foundation is None:
        skipped["forgetting"] = NO_FOUNDATION
    elif data.replay and foundation is not None:
        stage("evaluating forgetting")
        reference = foundation

        def replay_forgetting() -> ForgettingReport:
            both = {"fine-tuned model": model, "foundation": reference}
            require_known_elements(both, data.replay or [], "forgetting (replay) data")
            return forgetting_section(
                forgetting(reference, model, data.replay or [], device=device)
            )

        if (forgot := attempt("forgetting", skipped, replay_forgetting)) is not None:
            report.forgetting = forgot
    test = _known_to(model, data.test or [])
    if settings.md and test:

        def run_md() -> tuple[list[MDRunReport], RdfReport | None]:
            md = md_outcome(
                model,
                test,
                settings,
                budget_s=md_budget_s,
                on_stage=stage,
                on_steps=on_steps,
                device=device,
            )
            if not md.frames:
                return md.runs, None
            stage("comparing radial distribution functions")
            return md.runs, _rdf_section(md.frames, data.reference or data.test or [])

        if (measured_md := attempt("md", skipped, run_md)) is not None:
            report.md, rdf = measured_md
            if rdf is not None:
                report.rdf = rdf
    structures = [atoms for atoms in test if len(atoms) > 1][:1]
    if settings.dimers:
        stage("evaluating short-range repulsion")
        dimers = attempt(
            "dimers",
            skipped,
            lambda: _repulsion(model, foundation, _elements(test, model), structures, device),
        )
        if dimers is not None:
            report.dimers = dimers
    if skipped:
        report.not_measured = skipped
    return report


def _repulsion(
    model: torch.nn.Module,
    foundation: torch.nn.Module | None,
    elements: list[str],
    structures: list[ase.Atoms],
    device: str,
) -> DimersReport:
    dimers = repulsion_section(short_range_repulsion(model, elements, structures, device=device))
    if foundation is not None:
        # Holes the foundation has already are inherited, not made by the fine-tuning;
        # sweeps judge a model by the holes beyond its foundation's (core.workflows.sweeps).
        known = [symbol for symbol in elements if not _unknown(foundation, [symbol])]
        dimers.foundation_holes = short_range_repulsion(
            foundation, known, structures, device=device
        ).holes
    return dimers


def _unknown(model: torch.nn.Module, symbols: list[str]) -> bool:
    return bool(unknown_elements(model, [ase.Atoms(symbols)]))


def _known_to(model: torch.nn.Module, configs: list[ase.Atoms]) -> list[ase.Atoms]:
    """The configurations of elements the model knows (MD and dimers run on them)."""
    return [atoms for atoms in configs if not unknown_elements(model, [atoms])]


def _rdf_section(frames: list[ase.Atoms], reference: list[ase.Atoms]) -> RdfReport:
    try:
        model_rdf = radial_distribution(frames)
    except ValueError as error:
        # Periodic and molecular structures mixed: no single kind of RDF describes them.
        return RdfReport(pairs={}, note=str(error))
    note: str | None
    try:
        reference_rdf = radial_distribution(reference)
        emd = compare_rdfs(model_rdf, reference_rdf).emd_per_pair
    except ValueError as error:
        reference_rdf, emd, note = None, {}, str(error)
    else:
        note = None
    return RdfReport(
        note=note,
        pairs={
            pair: RdfPairReport(
                r=model_rdf.r.tolist(),
                model=values.tolist(),
                reference=_values(reference_rdf.pairs.get(pair)) if reference_rdf else None,
                emd=emd.get(pair),
            )
            for pair, values in model_rdf.pairs.items()
        },
    )


def accuracy_section(metrics: AccuracyMetrics) -> AccuracyReport:
    parity = metrics.parity
    return AccuracyReport(
        **_plain_metrics(metrics),
        parity=ParityReport(
            energy_per_atom=ParityValues(
                reference=parity.energy_reference_ev_per_atom,
                predicted=parity.energy_predicted_ev_per_atom,
            ),
            forces=ParityValues(
                reference=parity.forces_reference_ev_per_a,
                predicted=parity.forces_predicted_ev_per_a,
            ),
            stress=ParityValues(
                reference=parity.stress_reference_ev_per_a3,
                predicted=parity.stress_predicted_ev_per_a3,
            ),
        ),
    )


def forgetting_section(result: Forgetting) -> ForgettingReport:
    offset_free = result.energy_offset_removed
    return ForgettingReport(
        reference=result.reference,
        foundation=(
            None
            if result.foundation is None
            else ReplayErrors.model_validate(result.foundation.to_dict())
        ),
        # Without the parity data: the foundation's errors are what the report compares.
        finetuned=ReplayErrors(**_plain_metrics(result.fine_tuned)),
        force_rmse_ratio=result.forces_rmse_ratio,
        energy_offset_removed=(
            None if offset_free is None else OffsetFreeEnergiesReport(**offset_free.to_dict())
        ),
    )


def repulsion_section(result: Repulsion) -> DimersReport:
    return DimersReport(
        holes=result.holes,
        pairs={
            curve.pair: DimerCurveReport(
                r=curve.distances_a, energy=curve.energies_ev, hole=curve.hole is not None
            )
            for curve in result.dimers
        },
        compression=[
            CompressionCurveReport(
                structure=curve.formula,
                scale=curve.scales,
                energy=curve.energies_ev_per_atom,
                hole=curve.hole is not None,
                n_atoms=curve.n_atoms,
                stopped_below=curve.stopped_below,
            )
            for curve in result.compressions
        ],
    )


def _plain_metrics(metrics: AccuracyMetrics) -> dict[str, Any]:
    return {key: value for key, value in metrics.to_dict().items() if key != "parity"}


def _values(array: Any) -> list[float] | None:
    return None if array is None else array.tolist()


def _elements(configs: list[ase.Atoms], model: torch.nn.Module) -> list[str]:
    """The data's elements (the model's own when there are no data), by atomic number."""
    numbers = {int(z) for atoms in configs for z in atoms.numbers} or set(
        mace_model.atomic_numbers(model)
    )
    return [chemical_symbols[z] for z in sorted(numbers)]
