"""County finance: it moves money only into the towns' reserves (R4, P10, P11)."""

from fastapi import APIRouter

from services.intake.routes.commands import add_command_route

router = APIRouter()
TAGS = ["finance"]

add_command_route(
    router,
    "replenish_reserve",
    tags=TAGS,
    summary="Replenish a town's reserve towards its size (finance; P11)",
    operation_id="replenish_reserve",
)
add_command_route(
    router,
    "fund_reserve",
    tags=TAGS,
    summary="Fund a town's reserve (finance; R4)",
    operation_id="fund_reserve",
)
