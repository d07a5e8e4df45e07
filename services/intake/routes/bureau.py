"""The county emergency management bureau: incidents (R1) and emergency periods (R2)."""

from fastapi import APIRouter

from services.intake.routes.commands import add_command_route

router = APIRouter()
TAGS = ["emergency bureau"]

add_command_route(
    router,
    "report_incident",
    tags=TAGS,
    doc="Report an accident or natural disaster with the households hit (emergency_bureau).",
)
add_command_route(
    router,
    "update_incident",
    tags=TAGS,
    doc="New casualty figures or households for an incident (emergency_bureau).",
)
add_command_route(router, "close_incident", tags=TAGS, doc="Close an incident (emergency_bureau).")
add_command_route(
    router,
    "emergency_period_emergency_period",
    tags=TAGS,
    summary="R2: an emergency period for an incident in a town (the emergency bureau).",
    operation_id="emergency_period_emergency_period",
)
add_command_route(
    router,
    "emergency_period_end",
    tags=TAGS,
    summary="emergency-period/end",
    operation_id="emergency_period_end",
)
