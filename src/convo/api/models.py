from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from convo.api.deps import CurrentUser, ServicesDep

router = APIRouter(prefix="/api", tags=["models"])


class ModelPublic(BaseModel):
    id: str
    provider: str
    label: str
    context_window: int | None
    input_usd_per_mtok: float | None
    output_usd_per_mtok: float | None
    default: bool


class ModelsPublic(BaseModel):
    items: list[ModelPublic]


@router.get("/models")
async def list_models(user: CurrentUser, services: ServicesDep) -> ModelsPublic:
    models = await services.registry.list_models()
    default = await services.registry.default_model_id()
    return ModelsPublic(
        items=[
            ModelPublic(
                id=m.id,
                provider=m.provider,
                label=m.label,
                context_window=m.context_window,
                input_usd_per_mtok=m.input_usd_per_mtok,
                output_usd_per_mtok=m.output_usd_per_mtok,
                default=m.id == default,
            )
            for m in models
        ]
    )
