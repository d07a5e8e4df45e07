"""Operations: whether the processor keeps up (/healthz) and whether the process answers
(/livez)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.intake.contract import Live
from services.intake.deps import IntakeDep
from services.intake.domain import health as health_model

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    response_model=health_model.HealthView,
    responses={
        503: {
            "model": health_model.HealthView,
            "description": "degraded: records wait and the processor makes no progress, "
            "or Kafka cannot be read",
        }
    },
)
async def healthz(intake: IntakeDep) -> JSONResponse:
    """Whether the processor consumes what intake accepts: its consumer group's committed
    offsets against the intake topic's end, read in the background every few seconds.
    503 when records wait and the committed offsets have not advanced for the configured
    time (RELIEF_INTAKE_HEALTH_STALL_S), or when Kafka cannot be read."""
    view = intake.health.report()
    return JSONResponse(view.model_dump(mode="json"), 200 if view.status == "ok" else 503)


@router.get("/livez", response_model=Live)
async def livez() -> Live:
    """The process answers HTTP (whatever Kafka and the processor do)."""
    return Live(status="ok")
