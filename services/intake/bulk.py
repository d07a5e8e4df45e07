"""Bulk intake: many commands in one request, as NDJSON (issue 14; the route is
routes/bulk.py).

One command per line (`domain/bulk.py` says the line's shape). Each line is checked,
authorised and deduplicated by its own idempotency key exactly as its single endpoint
does it — the same key store, the same 24 hours, the same event id, 409 on another body
— and produced to Kafka (acks=all, idempotent) like a single write; but lines travel in
batches: a batch's keys are claimed in one statement, its records queued with the
producer at once and acknowledged together, its answers stored in one statement. So
100,000 lines pay a few hundred round trips, not 100,000.

The answer streams back as NDJSON, one line per command line, in input order, with the
line number: `{"line": 7, "status": 202, "event_id": ...}` or `{"line": 8, "status": 422,
"error": "body.requested_fen: ..."}`. A refused line changes nothing and never stops the
others; 503 on a line means Kafka did not acknowledge it (the outcome is unknown: re-send
it with the same key, it is recorded at most once). Blank lines are skipped (numbers
still count them).

Bounded memory: the body is read as it arrives (`request.stream()`; `BodyLimit` lets this
path through), a line over `intake_bulk_max_line_bytes` is dropped as it arrives and
answered 413, and at most `intake_bulk_batches_in_flight` batches wait for Kafka.
"""

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect

from services.intake.adapters.idempotency_store import Answered, Claimed, KeyBusy
from services.intake.adapters.kafka import Ack, ProduceUnavailable
from services.intake.contract import accepted
from services.intake.domain.bulk import (
    LineRefused,
    LineSplitter,
    Prepared,
    is_blank,
    prepare,
)
from services.intake.domain.idempotency import Answer
from services.intake.domain.tokens import Principal
from services.intake.service import Intake, KeyStore

log = logging.getLogger("relief.intake.bulk")


@dataclass
class _Line:
    number: int
    prepared: Prepared | None = None
    result: dict[str, Any] | None = None  # set when the line is answered


def _line_json(result: dict[str, Any]) -> bytes:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class BulkWriter:
    """One bulk request's pipeline: lines -> batches -> claims -> Kafka -> answers."""

    def __init__(self, intake: Intake, principal: Principal) -> None:
        self.intake = intake
        self.principal = principal
        settings = intake.settings
        self.max_line_bytes = settings.intake_bulk_max_line_bytes
        self.batch_lines = settings.intake_bulk_batch_lines
        self.batch_bytes = settings.intake_bulk_batch_bytes
        self.in_flight_max = settings.intake_bulk_batches_in_flight
        self.retry_after_s = settings.intake_retry_after_s

    # ------------------------------------------------------------ the stream

    async def answers(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        splitter = LineSplitter(self.max_line_bytes)
        number = 0
        batch: list[_Line] = []
        batch_keys: set[str] = set()
        batch_bytes = 0
        in_flight: deque[asyncio.Task[list[_Line]]] = deque()

        async def flush() -> None:
            nonlocal batch, batch_keys, batch_bytes
            if batch:
                in_flight.append(await self._start(batch))
            batch, batch_keys, batch_bytes = [], set(), 0

        try:
            ended = False
            while not ended:
                try:
                    chunk = await anext(chunks)
                    pieces = splitter.feed(chunk)
                except StopAsyncIteration:
                    ended = True
                    pieces = splitter.close()
                except ClientDisconnect:
                    return  # nobody to answer; what was queued still completes
                for piece in pieces:
                    number += 1
                    if isinstance(piece, bytes) and is_blank(piece):
                        continue
                    line = self._check(number, piece)
                    if line.prepared is not None:
                        key = line.prepared.key
                        # one statement claims each key once: a key seen again waits for
                        # the first line's answer (a batch of its own, after it)
                        if key in batch_keys:
                            await flush()
                        batch_keys.add(key)
                        batch_bytes += len(piece) if isinstance(piece, bytes) else 0
                    batch.append(line)
                    if len(batch) >= self.batch_lines or batch_bytes >= self.batch_bytes:
                        await flush()
                    while len(in_flight) >= self.in_flight_max:
                        yield _answers(await in_flight.popleft())
                # keep Kafka busy: a partial batch goes when nothing else is waiting
                if batch and (ended or not in_flight):
                    await flush()
                while in_flight and in_flight[0].done():
                    yield _answers(in_flight.popleft().result())
            while in_flight:
                yield _answers(await in_flight.popleft())
        finally:
            for task in in_flight:  # the client went away: finish what was sent, quietly
                task.add_done_callback(_quietly)

    def _check(self, number: int, piece: bytes | int) -> _Line:
        if isinstance(piece, int):
            refused = LineRefused(
                413,
                [((), f"line over {self.max_line_bytes} bytes ({piece}): one command per line")],
                "too_long",
            )
            return _Line(number, result={"line": number, **refused.answer()})
        try:
            prepared = prepare(
                piece,
                principal=self.principal,
                county=self.intake.county,
                hash_key=self.intake.hash_key,
                now=self.intake.clock(),
                max_line_bytes=self.max_line_bytes,
                require_key=self.intake.settings.intake_require_idempotency_key,
            )
        except LineRefused as exc:
            return _Line(number, result={"line": number, **exc.answer()})
        return _Line(number, prepared=prepared)

    # ------------------------------------------------------------ one batch

    async def _start(self, batch: list[_Line]) -> asyncio.Task[list[_Line]]:
        """Claim the batch's keys and queue its records in input order (so the next batch
        queues after it); the task that waits for Kafka's acknowledgements is returned."""
        todo = [line for line in batch if line.prepared is not None]
        org = self.principal.org
        store = self.intake.keys
        try:
            found = await store.claim_many(org, [(p.key, p.fingerprint) for p in _prepared(todo)])
            for i, outcome in enumerate(found):
                if outcome is None:
                    # another request holds this key right now: wait for it as the
                    # single path does (bounded), then replay its answer or claim it
                    p = _prepared([todo[i]])[0]
                    try:
                        found[i] = await store.claim(org, p.key, p.fingerprint)
                    except KeyBusy:
                        todo[i].result = self._busy(todo[i])
        except Exception as exc:  # the key store did not answer: nothing was produced
            log.warning("bulk: idempotency keys not claimed: %s", type(exc).__name__)
            for line in todo:
                line.result = self._unavailable(line, "the idempotency key store did not answer")
            return _done(batch)
        claimed: list[_Line] = []
        for line, outcome in zip(todo, found, strict=True):
            if line.result is not None:
                continue
            if isinstance(outcome, Answered):
                line.result = self._replay(line, outcome)
            elif isinstance(outcome, Claimed):
                claimed.append(line)
        records = [p.record for p in _prepared(claimed)]
        # each to where the single path sends it: requests for relief to the claims stage
        acks = await self.intake.sink.send_many([self.intake.route(r) for r in records])
        return asyncio.create_task(self._finish(batch, claimed, acks, store))

    async def _finish(
        self,
        batch: list[_Line],
        claimed: list[_Line],
        acks_coro: Any,
        store: KeyStore,
    ) -> list[_Line]:
        acks: list[Ack | ProduceUnavailable] = await acks_coro
        org = self.principal.org
        answered: list[tuple[str, Answer]] = []
        unknown: list[str] = []
        for line, ack in zip(claimed, acks, strict=True):
            p = _prepared([line])[0]
            if isinstance(ack, ProduceUnavailable):
                unknown.append(p.key)
                line.result = self._unavailable(line, f"Kafka did not acknowledge ({ack})")
                continue
            body = accepted(p.record, ack).model_dump(mode="json")
            answered.append((p.key, Answer(202, body)))
            line.result = {"line": line.number, "status": 202, **body}
        try:
            await store.complete_many(org, answered)
        except Exception as exc:
            # Kafka holds them; a re-sent line claims again and produces the same event
            # id, which the processor applies once (as the single path after a crash)
            log.warning("bulk: answers not stored: %s", type(exc).__name__)
        finally:
            # refused or unknown: the next try claims again (as `Intake.submit`)
            try:
                await store.release_many(org, unknown)
            except Exception as exc:
                log.warning("bulk: keys not released: %s", type(exc).__name__)
        return batch

    # ------------------------------------------------------------ answers

    def _replay(self, line: _Line, first: Answered) -> dict[str, Any]:
        p = _prepared([line])[0]
        differing = first.fingerprint.differing(p.fingerprint)
        if differing:
            return {
                "line": line.number,
                "status": 409,
                "error": "idempotency_key already used with a different request: "
                + ", ".join(differing),
                "differing_fields": differing,
            }
        return {
            "line": line.number,
            "status": first.answer.status,
            "replayed": True,
            **first.answer.body,
        }

    def _busy(self, line: _Line) -> dict[str, Any]:
        return {
            "line": line.number,
            "status": 409,
            "error": "a request with this idempotency_key is still being recorded; re-send "
            f"the line with the same key after {self.retry_after_s} s",
        }

    def _unavailable(self, line: _Line, why: str) -> dict[str, Any]:
        p = _prepared([line])[0]
        return {
            "line": line.number,
            "status": 503,
            "event_id": str(p.record.event_id),
            "error": f"{why}: the outcome is unknown (the record may still land). Re-send "
            f"this line with the same idempotency_key after {self.retry_after_s} s: it is "
            "recorded at most once.",
        }


def _prepared(lines: Sequence[_Line]) -> list[Prepared]:
    out: list[Prepared] = []
    for line in lines:
        if line.prepared is None:
            raise RuntimeError(f"bulk line {line.number} has no prepared command")
        out.append(line.prepared)
    return out


def _answers(lines: list[_Line]) -> bytes:
    out = bytearray()
    for line in lines:
        if line.result is None:
            raise RuntimeError(f"bulk line {line.number} was never answered")
        out += _line_json(line.result)
    return bytes(out)


def _done(batch: list[_Line]) -> asyncio.Task[list[_Line]]:
    async def ready() -> list[_Line]:
        return batch

    return asyncio.create_task(ready())


def _quietly(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("bulk: a batch failed after its client left: %r", task.exception())
