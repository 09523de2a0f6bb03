"""What each fine-tuning strategy is, in one table: the job spec, the sweep, the mace arguments,
the model checks, the cost probe and the dashboard (through GET /strategies) all read it here.

Adding a strategy: a row here, its spec model in core.science.spec (the discriminated union needs
the name written as a Literal there too; tests/unit/test_strategy_table.py holds the two together),
and its mace flags in core.science.strategies when the traits below do not already say them.
"""

from dataclasses import dataclass
from typing import Literal, get_args

StrategyName = Literal[
    "naive",
    "freeze_interactions",
    "freeze_readout_only",
    "lora",
    "multihead_replay",
    "pseudolabel_replay",
    "replay_lora",
    "scratch",
]
# Which parameters train, for the trainable-parameter check (core.science.model_checks) and the cost
# probe (core.science.cost): every parameter, those past the freeze level, or the LoRA adapters
# alone.
TrainableRule = Literal["all", "unfrozen", "lora_adapters"]
# Whether the replay labels are the foundation's own predictions: never, always, or as the
# spec's `pseudolabel` field says (replay_lora; it defaults to true).
Pseudolabels = Literal["never", "always", "optional"]


@dataclass(frozen=True)
class Preset:
    lr: float
    ema_decay: float
    clip_grad: float


@dataclass(frozen=True)
class StrategyTraits:
    name: StrategyName
    # One line for a researcher choosing a strategy (the dashboard's new-job page shows it).
    summary: str
    # arXiv 2606.12704 presets (science.md §1): AdamW, weight decay 0, E/F loss weights 10/10.
    preset: Preset
    # mace's --freeze level: 5 freezes the embedding and every interaction block, 6 also the
    # products; None trains them.
    freeze_level: int | None = None
    lora: bool = False
    replay: bool = False
    pseudolabels: Pseudolabels = "never"
    # Only scratch trains without a foundation model.
    foundation: bool = True
    # A known-bad choice from the study: accepted, but every job with it carries this warning.
    caution: str | None = None

    @property
    def trainable(self) -> TrainableRule:
        if self.lora:
            return "lora_adapters"
        return "unfrozen" if self.freeze_level is not None else "all"


# The study's presets come in three kinds (science.md §1); replay_lora has its own below.
_FINE_TUNE = Preset(lr=1e-3, ema_decay=0.999, clip_grad=1.0)
_HIGH_LR = Preset(lr=1e-2, ema_decay=0.99, clip_grad=10.0)
_REPLAY = Preset(lr=1e-4, ema_decay=0.9999, clip_grad=1.0)

STRATEGIES: dict[StrategyName, StrategyTraits] = {
    traits.name: traits
    for traits in (
        StrategyTraits(
            "naive",
            "Everything trains, starting from the foundation: best for one target system.",
            _FINE_TUNE,
        ),
        StrategyTraits(
            "freeze_interactions",
            "Embedding and interactions frozen; products and readouts train (Freeze 5).",
            _FINE_TUNE,
            freeze_level=5,
        ),
        StrategyTraits(
            "freeze_readout_only",
            "Only the readouts train (Freeze 6).",
            _FINE_TUNE,
            freeze_level=6,
        ),
        StrategyTraits(
            "lora",
            "Low-rank adapters on the foundation, merged into the delivered model.",
            _HIGH_LR,
            lora=True,
        ),
        StrategyTraits(
            "multihead_replay",
            "Shared backbone; a target head plus a replay head trained on labelled replay data.",
            _REPLAY,
            replay=True,
        ),
        StrategyTraits(
            "pseudolabel_replay",
            "As multihead replay, with replay labels predicted by the foundation.",
            _REPLAY,
            replay=True,
            pseudolabels="always",
        ),
        StrategyTraits(
            "replay_lora",
            "Replay and LoRA together (the study: usually worse than either alone).",
            # The study's choice for it: its adapters are all that trains.
            Preset(lr=1e-3, ema_decay=0.999, clip_grad=10.0),
            lora=True,
            replay=True,
            pseudolabels="optional",
            caution=(
                "replay + LoRA was worse than either alone nearly everywhere in the study "
                "(over-regularisation); compare it with pseudolabel_replay and lora"
            ),
        ),
        StrategyTraits(
            "scratch",
            "A new MACE trained on the data alone: the baseline, no foundation.",
            _HIGH_LR,
            foundation=False,
        ),
    )
}
STRATEGY_NAMES: tuple[StrategyName, ...] = get_args(StrategyName)

REPLAY_STRATEGIES = frozenset(name for name, traits in STRATEGIES.items() if traits.replay)
LORA_STRATEGIES = frozenset(name for name, traits in STRATEGIES.items() if traits.lora)


def traits_of(name: str) -> StrategyTraits:
    return STRATEGIES[name]  # type: ignore[index]  # names come from a validated spec
