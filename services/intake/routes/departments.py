"""Departments (medical insurance, women's federation, disabled persons' federation, ...):
their lists of suspected hardship cases, pushed to civil affairs (section 二)."""

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from schemas.envelope import Record
from services.intake.adapters.kafka import Ack
from services.intake.contract import (
    WRITE_RESPONSES,
    CsvInvalid,
    HardshipAccepted,
    Invalid,
    accepted,
)
from services.intake.deps import IdemKey, IntakeDep, require
from services.intake.domain import requests as rq
from services.intake.domain.authz import Action
from services.intake.domain.commands import HARDSHIP_PATH, HardshipUpload
from services.intake.domain.hardship_csv import CsvRefused, decode_upload, validate_rows
from services.intake.domain.tokens import Principal
from services.intake.routes.commands import respond

router = APIRouter()


@router.post(
    HARDSHIP_PATH,
    status_code=202,
    response_model=HardshipAccepted,
    responses={
        **WRITE_RESPONSES,
        422: {"model": CsvInvalid | Invalid, "description": "no row accepted, or bad file"},
    },
    tags=["departments"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {
                        "type": "string",
                        "description": "header town,household_head_id,category[,note]; "
                        "at most 5,000 rows",
                    }
                }
            },
        }
    },
)
async def push_hardship_list(
    request: Request,
    principal: Annotated[Principal, Depends(require(Action.PUSH_HARDSHIP_LIST))],
    intake: IntakeDep,
    idempotency_key: IdemKey = None,
) -> JSONResponse:
    """Upload suspected hardship cases (department). Rows are validated one by one;
    the answer reports each row, accepted or with what was wrong."""
    raw = await request.body()
    try:
        validated = validate_rows(
            decode_upload(raw), intake.county, intake.hash_key, intake.clock().date()
        )
    except CsvRefused as exc:
        raise rq.RequestInvalid([(("body",), str(exc))]) from None
    if validated.accepted_count == 0:
        return JSONResponse(
            {
                "detail": "no row was accepted; nothing recorded",
                "accepted": 0,
                "rejected": validated.rejected_count,
                "rows": [r.model_dump(mode="json") for r in validated.reports],
            },
            422,
        )

    def answering(records: Sequence[Record], acks: Sequence[Ack]) -> dict[str, Any]:
        return HardshipAccepted(
            accepted=validated.accepted_count,
            rejected=validated.rejected_count,
            rows=validated.reports,
            records=[accepted(r, a) for r, a in zip(records, acks, strict=True)],
        ).model_dump(mode="json")

    upload = HardshipUpload(validated, raw.decode("utf-8", "replace"), principal.org)
    return respond(await intake.submit(upload, principal, idempotency_key, answering))
