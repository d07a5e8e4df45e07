"""What travels on relief.claims.v1 besides requests: a town's release of a claim.

The claims stage (services/emergency, docs/design.md "one household, many towns") marks
every person of a request that it finds free of an earlier grant for the cause. When the
town's processor then ends the request without relief - refused for any reason, rejected
at review or approval, cancelled before payment - it writes a `ClaimReleased` onto the
claims topic, and the stage drops the marks that request left (and only those: marks are
matched by the request's event id). Persons are keyed hashes made at intake, never
resident ID numbers (docs/design.md "personal data stays out of the log").
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.envelope import MAX_ID_TEXT, CorrelationId, UtcDatetime

MAX_CLAIM_PERSONS = 23  # the head and up to 21 members (schemas.intake MAX_MEMBERS_PER_REQUEST)
MAX_CLAIM_CAUSE = MAX_ID_TEXT + 40  # "<category>|<incident id or '-'>"
# a household's ref ("h_" + 32 hex) or a member's ("p_" + 32 hex): keyed hashes only
ClaimPerson = Annotated[
    str, StringConstraints(pattern=r"^[hp]_[0-9a-f]{32}$", min_length=34, max_length=34)
]


class ClaimReleased(BaseModel):
    """P6: the request `request_id` of `town` came to nothing; its marks are released."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    type: Literal["ClaimReleased"] = "ClaimReleased"
    schema_version: Literal[1] = 1
    event_id: uuid.UUID  # derived from the request and "claim_released": once per request
    town: str = Field(pattern=r"^[0-9]{6,12}$", max_length=12)
    case_id: CorrelationId
    request_id: str = Field(min_length=1, max_length=36)
    cause_key: str = Field(min_length=3, max_length=MAX_CLAIM_CAUSE)
    persons: tuple[ClaimPerson, ...] = Field(min_length=1, max_length=MAX_CLAIM_PERSONS)
    released_at: UtcDatetime  # the town's time of the decision that ended the request
    reason: str = Field(min_length=1, max_length=32)  # the case's status: refused, ...


class InvalidClaimRecord(ValueError):
    """A ClaimReleased that does not validate: which fields, never their values."""


def decode_release(value: bytes) -> ClaimReleased:
    try:
        return ClaimReleased.model_validate_json(value)
    except ValidationError as exc:
        where = ", ".join(
            ".".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in exc.errors()
        )
        raise InvalidClaimRecord(f"ClaimReleased invalid: {where}"[:900]) from None
