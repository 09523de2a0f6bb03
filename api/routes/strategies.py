from dataclasses import asdict

from fastapi import APIRouter

from api.deps import PrincipalDep
from api.schemas import E0MethodPublic, StrategiesPublic, StrategyPublic
from core.science.spec import E0_METHOD_SUMMARIES
from core.science.strategy_table import STRATEGIES

router = APIRouter(prefix="/strategies", tags=["strategies"])


@router.get("", response_model=StrategiesPublic)
def read_strategies(_principal: PrincipalDep) -> StrategiesPublic:
    """The strategies a job spec accepts, with their traits and the study's presets, and the E0
    methods: what the new-job form offers, read from the one table the service runs by."""
    strategies = [
        StrategyPublic(
            **{key: value for key, value in asdict(traits).items() if key != "preset"},
            **asdict(traits.preset),
            trainable=traits.trainable,
        )
        for traits in STRATEGIES.values()
    ]
    e0_methods = [
        E0MethodPublic(name=name, summary=text) for name, text in E0_METHOD_SUMMARIES.items()
    ]
    return StrategiesPublic(strategies=strategies, e0_methods=e0_methods)
