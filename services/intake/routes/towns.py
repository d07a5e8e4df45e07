"""A town (镇、街道; section 八, one-door intake): its urgent cases from registration to
payment and paperwork (R5, P1, P9), and its disclosure lists (P7). Registering a case and
publishing a list are civil affairs' too."""

from fastapi import APIRouter

from services.intake.routes.commands import add_command_route

router = APIRouter()

add_command_route(
    router,
    "register_case",
    tags=["towns", "civil affairs"],
    doc="""Register a case: urgent (R5) or expenditure-type (R3), by its town (section 八)
    or civil affairs; a second grant for one cause by civil affairs only (P6).
    `correlation_id` in the answer is the case id.""",
)
add_command_route(
    router,
    "confirm_payment",
    tags=["towns"],
    summary="Confirm a payment, with its bank reference (town; R5, P9)",
    operation_id="confirm_payment",
)
add_command_route(
    router,
    "complete_paperwork",
    tags=["towns"],
    summary="Paperwork completed (town; P1)",
    operation_id="complete_paperwork",
)
add_command_route(
    router,
    "cancel_advance",
    tags=["towns"],
    summary="Cancel an advance before it is paid (town)",
    operation_id="cancel_advance",
)
add_command_route(
    router,
    "publish_disclosure",
    tags=["towns", "civil affairs"],
    doc="""The town's list of expenditure-type relief approved in `period` (YYYY-MM) was
    published (P7: within 10 working days of each approval). It covers the cases
    approved before it; one approved later needs the list published again. A town
    for itself, civil affairs for any town.""",
)
