from fastapi import APIRouter

from api.deps import RegistryDep
from api.schemas import FoundationPublic

router = APIRouter(prefix="/foundation-models", tags=["foundation models"])


@router.get("", response_model=list[FoundationPublic])
def read_foundation_models(registry: RegistryDep) -> list[FoundationPublic]:
    return [
        FoundationPublic(name=item.name, source=item.source, available=item.available)
        for item in registry.listing()
    ]
