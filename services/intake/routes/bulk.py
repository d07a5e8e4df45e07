"""POST /v1/bulk: many commands in one request, as NDJSON, one answer line per command line
(issue 14; the pipeline is services/intake/bulk.py)."""

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from services.intake.bulk import BulkWriter
from services.intake.contract import BULK_PATH, WRITE_RESPONSES, Refused
from services.intake.deps import Authenticated, IntakeDep
from services.intake.domain.commands import KINDS

router = APIRouter()

NDJSON = "application/x-ndjson"
CONTENT_TYPES = frozenset({NDJSON, "application/jsonl", "application/json-seq"})


class NdjsonStream(StreamingResponse):
    """A streamed answer that leaves `receive` to the request body: Starlette's own
    StreamingResponse listens for a disconnect on it meanwhile, and would take the body's
    chunks. A client that goes away is noticed as the body's end."""

    media_type = NDJSON

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


@router.post(
    BULK_PATH,
    status_code=200,
    response_class=NdjsonStream,
    responses={
        200: {
            "description": "one NDJSON line per command line, in input order: "
            '{"line": N, "status": 202, "event_id": ..., ...} (202 as the single '
            "endpoint answers it; replayed: true for a key already answered), or "
            '{"line": N, "status": 403|409|413|422|428|503, "error": "where: what"}',
            "content": {NDJSON: {"schema": {"type": "string"}}},
        },
        401: WRITE_RESPONSES[401],
        415: {"description": f"the body is not {NDJSON}"},
    },
    tags=["bulk"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                NDJSON: {
                    "schema": {
                        "type": "string",
                        "description": "one command per line: "
                        '{"type": KIND, "idempotency_key": "...", "path": {...}, '
                        '"body": {...}} where KIND is a single endpoint\'s operation id ('
                        + ", ".join(KINDS)
                        + "), path its path parameters and body its JSON body",
                    }
                }
            },
        }
    },
)
async def bulk(request: Request, principal: Authenticated, intake: IntakeDep) -> NdjsonStream:
    """Many commands at once (NDJSON, one per line): each line validated, authorised
    and deduplicated by its own `idempotency_key` as its single endpoint does it (the
    same keys: 24 hours, 409 on another body), produced to Kafka in batches, and
    answered on a line of its own, in order, with its line number. A refused line
    changes nothing and does not stop the others; 503 on a line: the outcome is
    unknown, re-send it with the same key."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in CONTENT_TYPES:
        raise Refused(415, f"send the commands as {NDJSON} (one JSON object per line)")
    writer = BulkWriter(intake, principal)
    return NdjsonStream(writer.answers(request.stream().__aiter__()))
