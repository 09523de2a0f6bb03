"""The job specification a researcher submits: typed, closed choices, paper defaults."""

import math
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.registry.foundations import DEMO_FOUNDATION_NAME, FoundationName
from core.science.strategy_table import traits_of
from core.service.run_labels import RunName, RunTags

# The E0 methods a spec names (science.md §2). The fifth, explicit {element: eV} values, is given
# as a mapping instead of a name; a job records it as "explicit" (E0Method, core.science.e0s.E0Fit).
E0MethodName = Literal["estimated", "foundation", "average", "isolated_atoms"]
EXPLICIT_E0S: Final = "explicit"
E0Method = Literal[E0MethodName, "explicit"]
E0_METHOD_NAMES: tuple[E0MethodName, ...] = get_args(E0MethodName)
# The methods that start from the foundation's E0s: a scratch model (no foundation) cannot use
# them, and with them a reference mismatch blocks (core.science.preflight), since nothing corrects
# it.
FOUNDATION_E0_METHODS: tuple[E0MethodName, ...] = ("estimated", "foundation")
# One line each for a researcher choosing (GET /strategies; the dashboard's new-job page).
E0_METHOD_SUMMARIES: dict[E0Method, str] = {
    "estimated": "corrected from the foundation's predictions on the training data (recommended)",
    "foundation": "keep the foundation's (same level of theory only)",
    "isolated_atoms": "single-atom configurations",
    "average": "fit on the data alone (not advised for fine-tuning)",
    "explicit": "explicit values",
}
AUTO_REPLAY = "auto"
# Which elements the delivered model knows (issue 25): every element of the foundation (mace's
# --foundation_model_elements; elements absent from the training data keep the foundation's
# E0s), or only the training data's (with the replay data's, for replay strategies): a smaller,
# faster model that cannot be evaluated on anything else.
ModelElements = Literal["foundation", "training"]


def e0_method_of(choice: "E0MethodName | dict[str, float]") -> E0Method:
    """The method a spec's `e0s` names: its name, or "explicit" for {element: eV} values."""
    return EXPLICIT_E0S if isinstance(choice, dict) else choice


# numpy and torch seed generators take 32-bit unsigned seeds.
SEED_MAX = 2**32 - 1
# All-electron energies of the heaviest atoms are about 1e6 eV; anything beyond is not an E0.
E0_MAX_ABS_EV = 1e7
# Ids the service hands out are 32 hex digits; the bound keeps absurd strings out of queries.
ObjectId = Annotated[str, Field(min_length=1, max_length=64)]


def _nul_byte_at(value: Any, where: str) -> str | None:
    """Where a NUL byte hides in decoded JSON (PostgreSQL text and JSON refuse it)."""
    if isinstance(value, str):
        return (where or "a value") if "\x00" in value else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"a key of {where or 'the body'}"
            items.append((f"{where}.{key}" if where else str(key), item))
    elif isinstance(value, list):
        items = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    for path, item in items:
        found = _nul_byte_at(item, path)
        if found is not None:
            return found
    return None


class SpecModel(BaseModel):
    """Base of every request model: numbers are finite (NaN and Infinity are valid Python
    JSON but no valid setting, and PostgreSQL's JSON refuses them) and no string holds NUL.

    Strict (issue 26): JSON numbers are numbers and booleans booleans; "10" or true for an
    integer is refused naming the field, never coerced. An integer where a float is expected is
    a number, and is taken."""

    model_config = ConfigDict(allow_inf_nan=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul_bytes(cls, value: Any) -> Any:
        where = _nul_byte_at(value, "")
        if where is not None:
            raise ValueError(f"{where} contains a NUL byte")
        return value


class Hyperparameters(SpecModel):
    """Training settings; `None` means the strategy's preset from the study
    (core.science.strategies)."""

    model_config = ConfigDict(extra="forbid")

    lr: float | None = Field(default=None, gt=0, le=1)
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    clip_grad: float | None = Field(default=None, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    energy_weight: float = Field(default=10.0, ge=0)
    forces_weight: float = Field(default=10.0, ge=0)
    # Stress loss weight, used when the training data have periodic cells with stress or
    # virials (mace --loss=stress); 0 trains energy and forces alone. The study states no stress
    # weight: 10 matches its energy and forces weights.
    stress_weight: float = Field(default=10.0, ge=0)
    max_num_epochs: int = Field(default=50, ge=1, le=10_000)
    patience: int = Field(default=2048, ge=1, le=2**31 - 1)
    batch_size: int = Field(default=5, ge=1, le=4096)
    valid_batch_size: int = Field(default=10, ge=1, le=4096)
    seed: int = Field(default=123, ge=0, le=SEED_MAX)


class NaiveStrategy(SpecModel):
    """Every weight trains, starting from the foundation (the study: best for one system)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["naive"] = "naive"


class FreezeInteractionsStrategy(SpecModel):
    """Embedding and interaction blocks frozen; products and readouts train ("Freeze (5)")."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["freeze_interactions"] = "freeze_interactions"


class FreezeReadoutOnlyStrategy(SpecModel):
    """Only the readouts train ("Freeze (6)"; the study found it too restrictive)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["freeze_readout_only"] = "freeze_readout_only"


class LoraStrategy(SpecModel):
    """Low-rank adapters on every linear layer, base weights frozen, merged on delivery."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["lora"] = "lora"
    rank: int = Field(default=4, ge=1, le=256)
    alpha: float = Field(default=1.0, gt=0)


class ReplaySpec(SpecModel):
    """Pretraining-like data the replay head keeps training on, so the model stays sane outside
    the target data (science.md §1)."""

    model_config = ConfigDict(extra="forbid")

    # A dataset id, or "auto": the job first builds (or reuses) a replay set for its training
    # data (core.workflows.replay_sets), of num_samples structures.
    dataset: ObjectId
    # None takes every configuration of the dataset.
    num_samples: int | None = Field(default=None, ge=1, le=10_000_000)
    selection: Literal["random", "fps"] = "random"
    # Multiplies the replay head's loss weights (the study: E 1 / F 10 against the target's 10/10).
    weight: float = Field(default=1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _auto_shorthand(cls, value: Any) -> Any:
        # `"replay": "auto"` is short for {"dataset": "auto"}.
        return {"dataset": AUTO_REPLAY} if value == AUTO_REPLAY else value

    @property
    def auto(self) -> bool:
        return self.dataset == AUTO_REPLAY


class MultiheadReplayStrategy(SpecModel):
    """Shared backbone, a target head and a replay head trained on labelled replay data."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["multihead_replay"] = "multihead_replay"
    replay: ReplaySpec


class PseudolabelReplayStrategy(SpecModel):
    """As multihead replay, but the replay labels are the foundation's own predictions."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["pseudolabel_replay"] = "pseudolabel_replay"
    replay: ReplaySpec


class ReplayLoraStrategy(SpecModel):
    """Replay and LoRA together (the study: usually worse than either alone)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["replay_lora"] = "replay_lora"
    replay: ReplaySpec
    pseudolabel: bool = True
    rank: int = Field(default=4, ge=1, le=256)
    alpha: float = Field(default=1.0, gt=0)


HIDDEN_IRREPS_MAX_MUL = 512
HIDDEN_IRREPS_MAX_L = 3


def parse_hidden_irreps(text: str) -> Any:
    """`text` parsed as e3nn irreps mace can build a model with (one multiplicity for every
    irrep, scalars included, l up to 3); ValueError naming the problem otherwise."""
    import mace  # noqa: F401  (e3nn loads its constants with torch.load, which mace relaxes)
    from e3nn import o3

    try:
        irreps = o3.Irreps(text)
    except Exception as error:  # e3nn raises ValueError, and not only that, for bad strings
        raise ValueError(f"hidden_irreps {text!r} cannot be parsed as irreps: {error}") from None
    if not irreps:
        raise ValueError(f"hidden_irreps {text!r} is empty")
    multiplicities = {mul for mul, _ in irreps}
    if len(multiplicities) != 1:
        raise ValueError(
            f"hidden_irreps {text!r}: mace needs the same multiplicity for every irrep "
            "(e.g. 32x0e+32x1o)"
        )
    mul = multiplicities.pop()
    if not 1 <= mul <= HIDDEN_IRREPS_MAX_MUL:
        raise ValueError(
            f"hidden_irreps {text!r}: the multiplicity must be 1 to {HIDDEN_IRREPS_MAX_MUL}"
        )
    if irreps.lmax > HIDDEN_IRREPS_MAX_L or o3.Irrep("0e") not in [ir for _, ir in irreps]:
        raise ValueError(
            f"hidden_irreps {text!r}: needs scalars (0e) and l at most {HIDDEN_IRREPS_MAX_L}"
        )
    return irreps


class ScratchArchitecture(SpecModel):
    model_config = ConfigDict(extra="forbid")

    r_max: float = Field(default=5.0, gt=1, le=12)
    hidden_irreps: str = Field(default="16x0e+16x1o", max_length=200)
    num_interactions: int = Field(default=2, ge=1, le=6)
    correlation: int = Field(default=3, ge=1, le=4)

    @field_validator("hidden_irreps")
    @classmethod
    def _irreps_mace_can_build(cls, value: str) -> str:
        return str(parse_hidden_irreps(value))


class ScratchStrategy(SpecModel):
    """A new MACE trained on the data alone: the study's baseline."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["scratch"] = "scratch"
    architecture: ScratchArchitecture = ScratchArchitecture()


AnyStrategy = (
    NaiveStrategy
    | FreezeInteractionsStrategy
    | FreezeReadoutOnlyStrategy
    | LoraStrategy
    | MultiheadReplayStrategy
    | PseudolabelReplayStrategy
    | ReplayLoraStrategy
    | ScratchStrategy
)
Strategy = Annotated[AnyStrategy, Field(discriminator="name")]
ReplayStrategy = MultiheadReplayStrategy | PseudolabelReplayStrategy | ReplayLoraStrategy


def replay_of(strategy: BaseModel) -> ReplaySpec | None:
    return getattr(strategy, "replay", None)


def uses_pseudolabels(strategy: AnyStrategy) -> bool:
    rule = traits_of(strategy.name).pseudolabels
    return rule == "always" or (rule == "optional" and getattr(strategy, "pseudolabel", False))


def lora_of(strategy: BaseModel) -> tuple[int, float] | None:
    """(rank, alpha) for strategies with LoRA adapters."""
    if isinstance(strategy, LoraStrategy | ReplayLoraStrategy):
        return strategy.rank, strategy.alpha
    return None


def freeze_level_of(strategy: AnyStrategy) -> int | None:
    """mace's --freeze level of the strategy; None when its blocks train."""
    return traits_of(strategy.name).freeze_level


def needs_foundation(strategy: AnyStrategy) -> bool:
    """Every strategy but scratch fine-tunes a foundation model."""
    return traits_of(strategy.name).foundation


class RssHolesSettings(SpecModel):
    """Random structure search for holes in the energy surface (core.evaluation.rss).

    Fields left `None` take the preset's value: "quick" runs in minutes on a CPU, "study" is the
    size of the study's Appendix A.5.
    """

    model_config = ConfigDict(extra="forbid")

    preset: Literal["quick", "study"] = "quick"
    # Cell contents as formulas ("Na4Cl4"); by default the training data's stoichiometries.
    compositions: list[str] | None = Field(default=None, min_length=1, max_length=50)
    max_compositions: int | None = Field(default=None, ge=1, le=50)
    structures_per_composition: int | None = Field(default=None, ge=1, le=500)
    max_atoms: int | None = Field(default=None, ge=1, le=64)
    # Negative is tension; beyond 1000 GPa no interatomic potential means anything.
    pressures_gpa: list[Annotated[float, Field(ge=-100, le=1000)]] | None = Field(
        default=None, min_length=1, max_length=10
    )
    cycles: int | None = Field(default=None, ge=1, le=10)
    relax_steps: int | None = Field(default=None, ge=1, le=5000)
    fmax_ev_per_a: float | None = Field(default=None, gt=0)
    rattle_a: float | None = Field(default=None, ge=0, le=1)
    # The same seed gives the same starting structures for every model compared.
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    # The study's four criteria.
    min_distance_fraction: float = Field(default=0.5, gt=0, lt=1)
    collapsed_volume_fraction: float = Field(default=0.3, gt=0, lt=1)
    energy_mad_multiple: float = Field(default=10.0, gt=0)
    energy_floor_ev_per_atom: float = Field(default=5.0, ge=0)
    compressed_volume_fraction: float = Field(default=0.5, gt=0, lt=1)
    # Warn when the model's hole rate exceeds its foundation's by more than this (0.05: five
    # percentage points).
    foundation_margin: float = Field(default=0.05, ge=0, le=1)
    # Worker processes relaxing structures; None uses every core of the worker.
    processes: int | None = Field(default=None, ge=1, le=256)

    @field_validator("compositions")
    @classmethod
    def _compositions_are_cells(cls, value: list[str] | None) -> list[str] | None:
        from ase.data import atomic_numbers
        from ase.formula import Formula

        for text in value or []:
            try:
                counts = Formula(text).count()
            except Exception as error:  # ase's parser raises ValueError, and not only that
                raise ValueError(f"composition {text!r} is not a formula: {error}") from None
            unknown = sorted(s for s in counts if atomic_numbers.get(s, 0) == 0)
            if unknown:
                raise ValueError(f"composition {text!r} names unknown element(s) {unknown}")
            if not counts or sum(counts.values()) > 64 or min(counts.values()) < 1:
                raise ValueError(f"composition {text!r} must hold 1 to 64 atoms")
        return value


class EvaluationSettings(SpecModel):
    """What a model is evaluated on besides its test set (science.md §3)."""

    model_config = ConfigDict(extra="forbid")

    # Pretraining-like data for the forgetting ratio; replay strategies default to their replay set.
    replay_dataset: ObjectId | None = None
    # Structures whose RDFs the model's MD is compared with; by default the test set.
    reference_dataset: ObjectId | None = None
    md: bool = True
    md_structures: int = Field(default=1, ge=1, le=10)
    # Lengths of the two MD runs in ps, up to the study's (250 ps at 100 K, a 50 -> 800 K ramp over
    # 50 ps); unset, each is sized so that MD takes about a quarter of the job's training time
    # (core.evaluation.md_plan, docs/md-stability.md).
    md_constant_ps: float | None = Field(default=None, ge=0.005, le=250)
    md_ramp_ps: float | None = Field(default=None, ge=0.005, le=50)
    # At most this many steps (0.5 fs) per run, whatever the lengths: quick runs.
    md_steps: int | None = Field(default=None, ge=10, le=500_000)
    dimers: bool = True
    # Random structure search for holes: off unless given (`{}` takes the quick preset).
    rss_holes: RssHolesSettings | None = None


class SplitSettings(SpecModel):
    """How the training set is split (core.data.splits): held-out validation and test
    configurations."""

    model_config = ConfigDict(extra="forbid")

    # An atoms.info key ("config_type", "trajectory"): configurations sharing its value stay on
    # one side of the split. None splits configuration by configuration.
    group_by: str | None = Field(default=None, min_length=1, max_length=100)
    # Held out of the training data as the test set when no test_dataset is given.
    test_fraction: float = Field(default=0.0, ge=0, lt=0.9)
    deduplicate: bool = True


class PreflightSettings(SpecModel):
    """The preflight stage every job starts with (core.science.preflight)."""

    model_config = ConfigDict(extra="forbid")

    # Codes of blocking findings the user accepts ("reference_mismatch", "energy_units", ...):
    # the job records them as warnings and trains.
    acknowledge: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=20
    )


class JobSpec(SpecModel):
    """What to fine-tune, on which data, how. Datasets are referred to by their ids."""

    model_config = ConfigDict(extra="forbid")

    # None: no foundation at all, for the scratch strategy only.
    foundation_model: FoundationName | None = DEMO_FOUNDATION_NAME
    # Multi-head foundations: the head (level of theory) to fine-tune; None takes its default
    # (GET /foundation-models lists heads and default). The delivered model has one head.
    foundation_head: str | None = Field(default=None, min_length=1, max_length=100)
    train_dataset: ObjectId
    valid_dataset: ObjectId | None = None
    valid_fraction: float = Field(default=0.1, gt=0, lt=0.9)
    test_dataset: ObjectId | None = None
    strategy: Strategy = NaiveStrategy()
    # A method name, or explicit {element: eV} values; `estimated` is the study's choice (§2).
    e0s: E0MethodName | dict[str, float] = "estimated"
    # Single-atom configurations at the training data's level of theory, for e0s="isolated_atoms"
    # when the training set does not contain them itself.
    isolated_atoms_dataset: ObjectId | None = None
    hyperparameters: Hyperparameters = Hyperparameters()
    evaluation: EvaluationSettings = EvaluationSettings()
    # Train on a random fraction of the training configurations (seeded): learning-curve sweeps.
    train_fraction: float = Field(default=1.0, gt=0, le=1)
    split: SplitSettings = SplitSettings()
    preflight: PreflightSettings = PreflightSettings()
    # The training data's level of theory ("PBE-D3/def2-TZVP"), carried into the model card.
    level_of_theory: str | None = Field(default=None, max_length=200)
    # The elements the delivered model knows (ModelElements); scratch knows the training data's.
    elements: ModelElements = "foundation"
    # How a researcher finds the job again (GET /jobs?name=...&tag=key=value); no effect on it.
    name: RunName | None = None
    tags: RunTags = {}

    @field_validator("e0s")
    @classmethod
    def _explicit_e0s_are_elements(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(value, dict):
            from ase.data import atomic_numbers

            unknown = sorted(set(value) - set(atomic_numbers))
            if unknown:
                raise ValueError(f"e0s names unknown elements: {', '.join(unknown)}")
            absurd = sorted(
                symbol
                for symbol, e0 in value.items()
                if not math.isfinite(e0) or abs(e0) >= E0_MAX_ABS_EV
            )
            if absurd:
                raise ValueError(
                    f"e0s of {', '.join(absurd)}: an E0 is a finite energy in eV with "
                    f"|E0| < {E0_MAX_ABS_EV:g}"
                )
        return value

    @model_validator(mode="after")
    def _scratch_e0s_come_from_the_data(self) -> "JobSpec":
        # A scratch model has no foundation to estimate E0s against. Without a choice its E0s
        # come from the data: "average" stands in here, and submission replaces it with
        # isolated atoms when the data hold them (core.science.e0s.data_e0_method). Set around
        # pydantic's assignment so that "e0s" stays out of model_fields_set: the spec says the
        # user left it open.
        if not traits_of(self.strategy.name).foundation and "e0s" not in self.model_fields_set:
            object.__setattr__(self, "e0s", "average")
        return self

    def e0s_left_to_the_data(self) -> bool:
        """Whether the service chooses this scratch spec's E0 method from the data."""
        return not traits_of(self.strategy.name).foundation and "e0s" not in self.model_fields_set

    @model_validator(mode="after")
    def _frozen_embedding_keeps_every_element(self) -> "JobSpec":
        if self.elements == "training" and freeze_level_of(self.strategy) is not None:
            raise ValueError(
                f"strategy {self.strategy.name} keeps the foundation's embedding frozen, which "
                "holds every foundation element: elements='training' would rescale it; use "
                "elements='foundation' (the default) or lora for a model of the training "
                "elements only"
            )
        return self

    @model_validator(mode="after")
    def _distinct_datasets(self) -> "JobSpec":
        # Test errors measured on training data are not test errors; validation on them stops
        # nothing from overfitting.
        roles = {
            "train_dataset": self.train_dataset,
            "valid_dataset": self.valid_dataset,
            "test_dataset": self.test_dataset,
        }
        named = [(role, dataset) for role, dataset in roles.items() if dataset is not None]
        for index, (role, dataset) in enumerate(named):
            for other, other_dataset in named[index + 1 :]:
                if dataset == other_dataset:
                    raise ValueError(
                        f"{role} and {other} name the same dataset {dataset}: use distinct "
                        "datasets (or valid_fraction / split.test_fraction to hold some out)"
                    )
        return self

    @model_validator(mode="after")
    def _scratch_has_no_foundation_e0s(self) -> "JobSpec":
        foundation = traits_of(self.strategy.name).foundation
        if not foundation and self.e0s in FOUNDATION_E0_METHODS:
            raise ValueError(
                f"e0s={self.e0s!r} needs a foundation model, and a scratch model has none: "
                "choose isolated_atoms, average or explicit {element: eV} values"
            )
        if foundation and self.foundation_model is None:
            raise ValueError(
                f"strategy {self.strategy.name} fine-tunes a foundation model: name one in "
                "foundation_model (only scratch trains without one)"
            )
        return self

    @model_validator(mode="after")
    def _one_test_set(self) -> "JobSpec":
        if self.test_dataset is not None and self.split.test_fraction > 0:
            raise ValueError("give either test_dataset or split.test_fraction, not both")
        return self

    @model_validator(mode="after")
    def _replay_keeps_foundation_e0s_apart(self) -> "JobSpec":
        if replay_of(self.strategy) is not None and self.e0s == "average":
            raise ValueError(
                "replay strategies cannot use e0s='average': mace refuses it for multihead "
                "fine-tuning; choose estimated, isolated_atoms, foundation or explicit values"
            )
        return self

    def fine_tuned_foundation(self) -> str:
        """The foundation model that a strategy other than scratch starts from; the validator
        above makes every such spec name one."""
        if self.foundation_model is None:
            raise ValueError(f"strategy {self.strategy.name} starts from no foundation model")
        return self.foundation_model


class ModelReference(SpecModel):
    """A job's fine-tuned model or an unmodified foundation model, to compare against it."""

    model_config = ConfigDict(extra="forbid")

    job: ObjectId | None = None
    foundation_model: FoundationName | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelReference":
        if (self.job is None) == (self.foundation_model is None):
            raise ValueError("name exactly one of job or foundation_model")
        return self


class EvaluationSpec(SpecModel):
    """Any model × dataset pair, evaluated like a job's model; or (kind "rss_holes") a random
    structure search for holes alone."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["standard", "rss_holes"] = "standard"
    model: ModelReference
    # Needed by "standard"; for "rss_holes" it is where compositions come from when
    # settings.rss_holes names none (a job's training data by default).
    dataset: ObjectId | None = None
    # The foundation the forgetting ratio and the hole rate compare with; a job's own by default.
    foundation_model: FoundationName | None = None
    # Multi-head foundations: the head of the foundation(s) used here; None takes each model's
    # default, or for a job's model the head the job fine-tuned.
    foundation_head: str | None = Field(default=None, min_length=1, max_length=100)
    settings: EvaluationSettings = EvaluationSettings()

    @model_validator(mode="after")
    def _standard_needs_a_dataset(self) -> "EvaluationSpec":
        if self.kind == "standard" and self.dataset is None:
            raise ValueError("a standard evaluation needs a dataset")
        return self
