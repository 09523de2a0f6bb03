"""The shape of every report: the evaluation's sections, a job's and an evaluation's report and
a model card, as pydantic models (a sweep's comparison is in core.reporting.sweep_models).

The field names are the JSON keys stored in the database and sent to clients: a metric's name is
written here once, and code reads it as an attribute. Rows written before a field existed still
validate: every field is optional, and `to_json` leaves out what a row never had, so a report
read back and sent on keeps its shape. Keys this module does not know are kept (`extra="allow"`),
so a section can grow (a server-computed verdict, a new metric) before its readers do.

Units are in the names: meV/atom, meV/Å, meV/Å³ for errors; eV, eV/Å, eV/Å³ for predictions; ps,
K, Å, GPa elsewhere.
"""

from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict

Level = Literal["good", "warn", "bad"]


class ReportModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    # Sections whose keys are open by design (a strategy's own checks): see undeclared_keys.
    free_form: ClassVar[bool] = False

    @classmethod
    def from_json(cls, values: dict[str, Any] | Self | None) -> Self:
        """A stored (or freshly built) JSON section as this model; None as an empty one."""
        if isinstance(values, cls):
            return values
        return cls.model_validate(values or {})

    def to_json(self) -> dict[str, Any]:
        """The JSON stored and sent: the fields set, so that an old row keeps its keys."""
        return self.model_dump(mode="json", exclude_unset=True)


# ---- accuracy (core.evaluation.accuracy) -----------------------------------------------------


class ErrorMetricsReport(ReportModel):
    """RMSE and MAE of each label; None where no configuration has that label."""

    n_configs: int | None = None
    energy_rmse_mev_per_atom: float | None = None
    energy_mae_mev_per_atom: float | None = None
    forces_rmse_mev_per_a: float | None = None
    forces_mae_mev_per_a: float | None = None
    stress_rmse_mev_per_a3: float | None = None
    stress_mae_mev_per_a3: float | None = None
    # The mean energy error and the RMSE once it is removed (relative-energy sets).
    energy_mean_error_mev_per_atom: float | None = None
    energy_rmse_without_offset_mev_per_atom: float | None = None
    # RMS of the labels: the RMSE of a model predicting zero.
    forces_label_rms_mev_per_a: float | None = None
    stress_label_rms_mev_per_a3: float | None = None
    # Labels ("forces", "stress") on which the model is worse than predicting zero.
    worse_than_zero: list[str] = []

    def zero_baseline(self, label: str) -> tuple[float | None, float | None, str]:
        """The label's RMSE, the RMS of its labels (the RMSE of predicting zero), their unit."""
        if label == "forces":
            return self.forces_rmse_mev_per_a, self.forces_label_rms_mev_per_a, "meV/Å"
        if label == "stress":
            return self.stress_rmse_mev_per_a3, self.stress_label_rms_mev_per_a3, "meV/Å³"
        raise ValueError(f"no zero baseline for {label!r}: forces and stress have one")


class ParityValues(ReportModel):
    reference: list[float] = []
    predicted: list[float] = []


class ParityReport(ReportModel):
    """Parity plot data; energies per atom relative to their composition's mean reference."""

    energy_per_atom: ParityValues | None = None  # eV/atom
    forces: ParityValues | None = None  # eV/Å, Cartesian components
    stress: ParityValues | None = None  # eV/Å³, 3x3 components


class AccuracyReport(ErrorMetricsReport):
    """One dataset's errors (the inherited fields), per config_type, and parity data."""

    per_config_type: dict[str, ErrorMetricsReport] = {}
    parity: ParityReport | None = None


# ---- forgetting (core.evaluation.forgetting) -------------------------------------------------


class ParityPoints(ReportModel):
    """A replay set's parity data, stored as core.evaluation.accuracy.ParityData names it."""

    energy_reference_ev_per_atom: list[float] = []
    energy_predicted_ev_per_atom: list[float] = []
    forces_reference_ev_per_a: list[float] = []
    forces_predicted_ev_per_a: list[float] = []
    stress_reference_ev_per_a3: list[float] = []
    stress_predicted_ev_per_a3: list[float] = []


class ReplayErrors(ErrorMetricsReport):
    """A model's errors on the replay (pretraining-like) data."""

    per_config_type: dict[str, ErrorMetricsReport] = {}
    parity: ParityPoints | None = None


class OffsetFreeEnergiesReport(ReportModel):
    """Energy RMSEs (meV/atom) once each model's per-element offset is removed."""

    foundation_mev_per_atom: float | None = None
    fine_tuned_mev_per_atom: float | None = None
    ratio: float | None = None


class ForgettingReport(ReportModel):
    # "dataset": the replay set's labels; "foundation": the foundation's predictions.
    reference: Literal["dataset", "foundation"] | None = None
    foundation: ReplayErrors | None = None
    finetuned: ReplayErrors | None = None
    # Fine-tuned over foundation force RMSE on the replay data (science.md §3).
    force_rmse_ratio: float | None = None
    energy_offset_removed: OffsetFreeEnergiesReport | None = None


# ---- molecular dynamics, RDF, dimers and compression -----------------------------------------


class MDRunReport(ReportModel):
    """One MD run (core.evaluation.md_section), or a structure MD cannot judge (`not_applicable`
    says why, `stable` is null)."""

    run: str | None = None
    kind: Literal["constant", "ramp"] | None = None
    structure: str | None = None  # chemical formula of the test structure
    n_atoms: int | None = None  # atoms simulated
    replication: str | None = None  # "11 copies 10.7 Å apart", "2×2×2 supercell"
    survived_ps: float | None = None
    total_ps: float | None = None  # the length run
    study_ps: float | None = None  # the study's length for this kind of run (250, 50)
    length_basis: str | None = None  # how the length was chosen
    stable: bool | None = None
    not_applicable: str | None = None
    failure: str | None = None
    # not_finite, close_contact, bonds_changed, temperature_runaway, energy_drift
    failure_reason: str | None = None
    max_energy_drift_ev_per_atom: float | None = None
    min_distance_ratio: float | None = None
    peak_temperature_K: float | None = None  # noqa: N815 (the stored key); windowed mean
    bonds_at_start: int | None = None
    # Traces drawn in the report; an energy that blew up to a non-number is null.
    time_ps: list[float] = []
    temperature_K: list[float] = []  # noqa: N815 (the stored key)
    energy_ev: list[float | None] = []


class RdfPairReport(ReportModel):
    r: list[float] = []  # Å
    model: list[float] = []
    reference: list[float] | None = None
    emd: float | None = None  # earth mover's distance, model vs reference


class RdfReport(ReportModel):
    note: str | None = None  # why there is no RDF or no reference
    pairs: dict[str, RdfPairReport] = {}


class DimerCurveReport(ReportModel):
    r: list[float] = []  # Å
    energy: list[float] = []  # eV
    hole: bool | None = None


class CompressionCurveReport(ReportModel):
    structure: str | None = None
    scale: list[float] = []  # lattice scale
    energy: list[float] = []  # eV/atom
    hole: bool | None = None
    n_atoms: int | None = None
    stopped_below: float | None = None


class DimersReport(ReportModel):
    holes: list[str] = []  # element pairs and structures whose curve has a hole
    pairs: dict[str, DimerCurveReport] = {}
    compression: list[CompressionCurveReport] = []
    # The foundation's own holes on the same curves: inherited, not made by the fine-tuning.
    foundation_holes: list[str] | None = None

    def curves(self) -> list[DimerCurveReport | CompressionCurveReport]:
        return [*self.pairs.values(), *self.compression]


# ---- random structure search (core.evaluation.rss) -------------------------------------------


class RssRates(ReportModel):
    structures: int | None = None
    relaxed: int | None = None
    failed: int | None = None
    holes: int | None = None
    rate: float | None = None
    criteria: dict[str, int] = {}  # structures meeting each criterion
    compositions: dict[str, "RssRates"] = {}


class RssModelReport(ReportModel):
    name: str | None = None
    cached: bool | None = None
    rates: dict[str, RssRates] = {}  # by pressure in GPa, as text ("0.1")


class RssFailure(ReportModel):
    model: str | None = None
    composition: str | None = None
    index: int | None = None
    pressure_gpa: float | None = None
    reason: str | None = None


class RssHolesReport(ReportModel):
    settings: dict[str, Any] | None = None
    structure_set: str | None = None  # digest of the starting structures
    compositions: list[str] = []
    models: dict[str, RssModelReport] = {}  # "model" and, when compared, "foundation"
    failures: list[RssFailure] = []
    warnings: list[str] = []
    flagged: int | None = None  # structures written to rss-holes.extxyz

    def lowest_pressure_rate(self) -> float | None:
        """The model's hole rate at the lowest pressure (the study's headline)."""
        model = self.models.get("model")
        if model is None or not model.rates:
            return None
        return model.rates[min(model.rates, key=float)].rate


# ---- the evaluation's sections ---------------------------------------------------------------


class EvaluationSections(ReportModel):
    """What core.evaluation.suite measured; a section is absent when it did not run."""

    accuracy: dict[str, AccuracyReport] | None = None  # by dataset ("test")
    forgetting: ForgettingReport | None = None
    md: list[MDRunReport] | None = None
    rdf: RdfReport | None = None
    dimers: DimersReport | None = None
    rss_holes: RssHolesReport | None = None
    # Sections that could not run, with the reason: "forgetting" -> "the fine-tuned model does
    # not know element(s) Pd ..." (core.evaluation.unmeasured); the job still succeeds.
    not_measured: dict[str, str] | None = None

    def headline_accuracy(self) -> tuple[str, AccuracyReport] | None:
        """The test set's accuracy, else the first dataset's."""
        if not self.accuracy:
            return None
        label = "test" if "test" in self.accuracy else next(iter(self.accuracy))
        return label, self.accuracy[label]

    def md_stable(self) -> bool | None:
        """None when MD did not run or could not judge any structure."""
        judged = [run.stable for run in self.md or [] if run.stable is not None]
        return all(judged) if judged else None

    def measured_warnings(self) -> list[str]:
        """Warnings the evaluation itself raised (a hole rate far above the foundation's)."""
        return list(self.rss_holes.warnings) if self.rss_holes else []


# ---- a job's record --------------------------------------------------------------------------


class E0sReport(ReportModel):
    """The E0s the model carries and how they were chosen (core.science.e0s.E0Fit), in eV."""

    method: str | None = None
    e0s: dict[str, float] = {}
    # Training-data energy RMSE (meV/atom) with the foundation's E0s and with the chosen ones.
    energy_rmse_before: float | None = None
    energy_rmse_after: float | None = None
    rank: int | None = None
    n_configs: int | None = None
    note: str | None = None
    # The model's predicted energy of each element's lone atom (the verification's).
    isolated_atom_energies: dict[str, float] | None = None
    # Issue 25: elements the training data lack, with the foundation's E0 the model keeps for
    # them; the foundation's own E0s; the isolated-atom energies found in the data.
    kept_from_foundation: dict[str, float] | None = None
    foundation_e0s: dict[str, float] | None = None
    isolated_atom_references: dict[str, float] | None = None

    def model_elements(self) -> list[str]:
        """Every element the model carries an E0 for, by atomic number."""
        from ase.data import atomic_numbers

        elements = {**(self.kept_from_foundation or {}), **self.e0s}
        return sorted(elements, key=atomic_numbers.__getitem__)


class E0Verification(ReportModel):
    """science.md §5: the delivered model carries the chosen E0s."""

    verified: bool | None = None
    isolated_atoms_checked: bool | None = None
    # Every element of the delivered model, each checked (issue 25).
    elements: list[str] | None = None
    # A lone atom's energy is E0 + this (ScaleShiftMACE: scale · readouts + shift), in eV.
    lone_atom_interaction_ev: dict[str, float] | None = None


class JobChecks(ReportModel):
    """The job's checks; strategy checks are free-form and kept as they are."""

    free_form: ClassVar[bool] = True

    e0s: E0Verification | None = None
    loss: Any = None
    trainable_parameters: dict[str, Any] | None = None


class ExportReport(ReportModel):
    variant: str | None = None  # torchscript, lammps
    key: str | None = None  # storage key of the exported file
    ok: bool | None = None
    max_energy_difference_ev: float | None = None
    max_forces_difference_ev_per_a: float | None = None
    error: str | None = None


class EpochReport(ReportModel):
    """One validation of the learning curve (mace evaluates once before epoch 0: epoch None)."""

    epoch: int | None = None
    head: str | None = None
    loss: float | None = None
    valid_energy_rmse_mev_per_atom: float | None = None
    valid_forces_rmse_mev_per_a: float | None = None
    seconds: float | None = None  # wall time of the epoch


class JobFacts(ReportModel):
    id: str | None = None
    state: str | None = None
    strategy: str | None = None
    foundation_model: str | None = None
    train_dataset: str | None = None
    test_dataset: str | None = None  # an id, or how much was held out of the training data
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    effective_hyperparameters: dict[str, Any] | None = None


class VerdictReport(ReportModel):
    """One verdict the report opens with, graded on the server (core.reporting.verdicts)."""

    label: str
    value: str
    level: Level


class JobReport(EvaluationSections):
    """Everything measured about a job (GET /jobs/{id}/report)."""

    title: str | None = None
    generated_at: str | None = None
    verdicts: list[VerdictReport] | None = None
    job: JobFacts | None = None
    warnings: list[str] | None = None
    checks: JobChecks | None = None
    preflight: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    exports: dict[str, ExportReport] | None = None
    e0s: E0sReport | None = None
    learning_curve: list[EpochReport] | None = None


class EvaluationReport(EvaluationSections):
    """Everything an evaluation measured (GET /evaluations/{id}/report)."""

    title: str | None = None
    generated_at: str | None = None
    verdicts: list[VerdictReport] | None = None
    warnings: list[str] | None = None


class JobMetrics(EvaluationSections):
    """GET /jobs/{id}/metrics: the evaluation's sections and the E0s the model carries."""

    job_id: str
    e0s: E0sReport | None = None


# ---- model card (core.reporting.model_card)
# ------------------------------------------------------------


class HeadlineMetrics(ReportModel):
    """The model card's metrics; the MD and dimer lines only where those ran."""

    test_n_configs: int | None = None
    test_energy_rmse_mev_per_atom: float | None = None
    test_forces_rmse_mev_per_a: float | None = None
    forgetting_force_rmse_ratio: float | None = None
    md_stable: bool | None = None
    md_survived_ps: str | None = None  # "H2O constant_100K: 0.1 of 250 ps, ..."
    dimer_holes: list[str] | None = None


class CardE0s(ReportModel):
    method: str | None = None
    values_ev: dict[str, float] | None = None
    # Elements the training data lack: the foundation's E0s, kept in the model (issue 25).
    kept_from_foundation_ev: dict[str, float] | None = None


class ModelCard(ReportModel):
    """GET /jobs/{id}/model-card: where the model came from and what it was measured to do."""

    job_id: str | None = None
    created_at: str | None = None
    foundation_model: dict[str, Any] | None = None  # {name, sha256, head}; None for scratch
    datasets: dict[str, dict[str, Any]] = {}  # role -> {id, name, sha256, n_configs, size_bytes}
    level_of_theory: Any = None
    strategy: dict[str, Any] = {}
    effective_hyperparameters: dict[str, Any] | None = None
    e0s: CardE0s | None = None
    metrics: HeadlineMetrics | None = None
    # Every element the model knows (issue 25), and the evaluation sections it could not be
    # measured on, with the reason.
    elements: list[str] | None = None
    not_measured: dict[str, str] | None = None
    checks: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    exports: dict[str, ExportReport] | None = None
    software: dict[str, str | None] = {}


def field_name(model: type[BaseModel], name: str) -> str:
    """`name`, checked to be a field of `model`: a table of columns that names a metric fails
    on import, not with an empty column, when the metric is renamed here."""
    if name not in model.model_fields:
        raise AttributeError(f"{model.__name__} has no field {name!r}")
    return name


def is_measured(section: ReportModel | list[Any] | dict[str, Any] | None) -> bool:
    """Whether a section holds anything (an old row may hold an empty {} or [])."""
    if isinstance(section, ReportModel):
        return bool(section.model_fields_set or section.model_extra)
    return bool(section)


# ---- preflight (core.science.preflight)
# --------------------------------------------------------------


class FindingReport(ReportModel):
    code: str | None = None
    severity: Literal["info", "warning", "blocking"] | None = None
    message: str | None = None
    details: dict[str, Any] = {}


class SuggestionReport(ReportModel):
    strategy: str | None = None
    e0s: str | None = None
    reason: str | None = None


class PreflightResult(ReportModel):
    """POST /preflight: what a job's first stage finds, without the job."""

    n_configs: int | None = None
    elements: list[str] = []
    # The foundation's errors on the training data (meV/atom, meV/Å), before any fine-tuning.
    foundation_errors: dict[str, float | None] = {}
    e0_residuals: dict[str, Any] = {}
    findings: list[FindingReport] = []
    blocking: list[str] = []  # codes of the blocking findings
    suggestion: SuggestionReport | None = None
    seconds: float | None = None
    cost_estimate: dict[str, Any] | None = None


def undeclared_keys(model: ReportModel, where: str = "") -> list[str]:
    """Paths of keys in `model` (and the report models inside it) that no field declares: what
    a producer writes that this module, and so the OpenAPI document, does not describe."""
    found = [] if model.free_form else [f"{where}{key}" for key in model.model_extra or {}]
    for name in model.model_fields_set & set(type(model).model_fields):
        found += _undeclared_in(getattr(model, name), f"{where}{name}.")
    return sorted(found)


def _undeclared_in(value: Any, where: str) -> list[str]:
    if isinstance(value, ReportModel):
        return undeclared_keys(value, where)
    if isinstance(value, list):
        return [key for item in value for key in _undeclared_in(item, f"{where}[].")]
    if isinstance(value, dict):
        return [key for k, item in value.items() for key in _undeclared_in(item, f"{where}{k}.")]
    return []
