"""County civil affairs (县民政局): reviews after the fact (P8), case-by-case deliberations
(R6) and the follow-up of departments' hardship lists (section 二). It also registers
cases and publishes disclosure lists (towns.py)."""

from fastapi import APIRouter

from services.intake.routes.commands import add_command_route

router = APIRouter()
TAGS = ["civil affairs"]

add_command_route(
    router,
    "review_case",
    tags=TAGS,
    summary="Review a case after the fact (civil_affairs; P8)",
    operation_id="review_case",
)
add_command_route(
    router,
    "decide_deliberation",
    tags=TAGS,
    summary="Decide a deliberation (civil_affairs; R6)",
    operation_id="decide_deliberation",
)
add_command_route(
    router,
    "follow_up_hardship",
    tags=TAGS,
    doc="""Follow up one row of a department's list (civil_affairs; section 二) with a
    written decision (P9): `case_opened` with its case_id, `no_relief_needed`, or
    `referred` with referred_to. The row is named by its list record's event id (the
    `event_id` of the pushed record, as the casebook lists it) and its index; `town`
    is the list's. The first decision on a row stands: the submission of a later one,
    or of one naming no row of that town, answers `rejected` with the reason.""",
)
