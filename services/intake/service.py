"""The intake service: what the routes and the bulk path write through.

`Intake.submit(command, principal, idempotency_key)` is the one place a write is
authorised for its town, fingerprinted, deduplicated by its key, routed (a request for
relief to the county's claims stage, everything else to its town's partition) and
produced. It answers what Kafka acknowledged (202), or the first answer to the key
(replayed); every refusal is raised before anything is produced, so it leaves no record:
`authz.Forbidden` (403), `rq.RequestInvalid` (422), `Refused` (409: the key with another
body, or still being recorded; 428: no key), `ProduceUnavailable` (503: the outcome is
unknown). The app turns each into its HTTP answer (app.py).

The bulk path (bulk.py) takes the same commands, key store and routing, a batch at a time.
"""

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from schemas.envelope import Record
from schemas.intake import ReliefRequested
from schemas.registry import encode
from schemas.topics import CLAIMS_KEY
from schemas.towns import County
from services.intake.adapters.idempotency_store import Answered, Claimed, KeyBusy
from services.intake.adapters.kafka import Ack, RecordSink
from services.intake.adapters.memory_keys import MemoryKeys
from services.intake.adapters.processor import HealthMonitor
from services.intake.adapters.token_file import TokenSource
from services.intake.contract import Refused, accepted
from services.intake.domain import requests as rq
from services.intake.domain.authz import Action, check, may_for_town
from services.intake.domain.commands import Command, event_id
from services.intake.domain.idempotency import Answer, Fingerprint, IdempotencyCache
from services.intake.domain.reads import ReadSource
from services.intake.domain.tokens import Principal
from services.intake.settings import IntakeSettings


class KeyStore(Protocol):
    """Where idempotency keys are claimed and answers kept: PostgreSQL, shared by every
    instance (adapters/idempotency_store.py), or this process's memory (memory_keys.py)."""

    async def claim(self, org: str, key: str, fingerprint: Fingerprint) -> Claimed | Answered:
        """Raises KeyBusy when another request holds the key for too long."""
        ...

    async def complete(self, org: str, key: str, answer: Answer) -> None: ...

    async def release(self, org: str, key: str) -> None: ...

    async def claim_many(
        self, org: str, wanted: Sequence[tuple[str, Fingerprint]]
    ) -> list[Claimed | Answered | None]: ...

    async def complete_many(self, org: str, answers: Sequence[tuple[str, Answer]]) -> None: ...

    async def release_many(self, org: str, keys: Sequence[str]) -> None: ...


# What a command's records and their acknowledgements answer (the 202's body).
Answering = Callable[[Sequence[Record], Sequence[Ack]], dict[str, Any]]


def one_accepted(records: Sequence[Record], acks: Sequence[Ack]) -> dict[str, Any]:
    """A single record's answer: where Kafka holds it."""
    (record,), (ack,) = records, acks
    return accepted(record, ack).model_dump(mode="json")


@dataclass(frozen=True)
class Submitted:
    """A write's answer: 202 as first given; `replayed` when the key had answered it."""

    answer: Answer
    replayed: bool = False


class Intake:
    """The service's state: settings, county, sink, reads, tokens, idempotency keys."""

    def __init__(
        self,
        settings: IntakeSettings,
        sink: RecordSink,
        reads: ReadSource,
        tokens: TokenSource,
        county: County,
        clock: Callable[[], datetime],
        health: HealthMonitor,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.reads = reads
        self.health = health
        self.tokens = tokens
        self.county = county
        self.clock = clock
        self.hash_key = settings.hash_key()
        # this process's keys until the app starts with a database (then every
        # instance's: app.py's lifespan)
        self.memory_keys = MemoryKeys(
            IdempotencyCache(
                settings.intake_idempotency_max_entries, settings.intake_idempotency_ttl_s
            )
        )
        self.keys: KeyStore = self.memory_keys

    # -------------------------------------------------------- the write path

    async def submit(
        self,
        command: Command,
        principal: Principal,
        idempotency_key: str | None,
        answering: Answering = one_accepted,
    ) -> Submitted:
        """Authorise, fingerprint, deduplicate, route and produce one command (the role
        was checked before the body was read: deps.require)."""
        command.authorize(principal, self.county)
        if idempotency_key is None:
            if self.settings.intake_require_idempotency_key:
                raise Refused(
                    428,
                    "every write needs an Idempotency-Key header (any unique string, e.g. a "
                    "UUID): a retry with the same key is then recorded at most once",
                )
            return Submitted(await self._produce(command, principal, uuid.uuid4(), answering))
        org, key = principal.org, idempotency_key
        fields = command.fields()
        fingerprint = Fingerprint.of(command.operation, fields, self.hash_key)
        try:
            found = await self.keys.claim(org, key, fingerprint)
        except KeyBusy:
            raise Refused(
                409,
                "a request with this Idempotency-Key is still being recorded; retry with the "
                f"same key after {self.settings.intake_retry_after_s} s",
                retry_after_s=self.settings.intake_retry_after_s,
            ) from None
        if isinstance(found, Answered):
            differing = found.fingerprint.differing(fingerprint)
            if differing:
                raise Refused(
                    409,
                    "Idempotency-Key already used with a different request: "
                    + ", ".join(differing),
                    differing_fields=differing,
                )
            return Submitted(found.answer, replayed=True)
        completed = False
        try:
            answer = await self._produce(
                command, principal, event_id(command, fields, org, key), answering
            )
            if 200 <= answer.status < 300:  # only what Kafka acknowledged is kept
                await self.keys.complete(org, key, answer)
                completed = True
            return Submitted(answer)
        finally:
            if not completed:
                # refused, or the outcome unknown: the retry claims the key again and
                # produces under the same event id, which the processor applies once
                await self.keys.release(org, key)

    async def _produce(
        self, command: Command, principal: Principal, event_id: uuid.UUID, answering: Answering
    ) -> Answer:
        stamp = rq.Stamp(event_id, self.clock(), principal.actor, self.hash_key, self.county)
        records = command.records(stamp)
        if len(records) == 1:
            acks: Sequence[Ack] = [await self.send(records[0])]
        else:  # a department's list: its records queued together, acknowledged together
            acks = await asyncio.gather(*(self.send(record) for record in records))
        return Answer(202, answering(records, acks))

    # -------------------------------------------------------- shared with reads and bulk

    def place(
        self, principal: Principal, action: Action, town: str, loc: rq.Loc = ("body", "town")
    ) -> None:
        """422 for a town the county does not have, then 403 unless the principal may act
        there (a town only for itself)."""
        rq.check_town(self.county, town, loc)
        check(may_for_town(principal, action, town))

    def route(self, record: Record) -> tuple[bytes, bytes, str | None]:
        """(key, value, topic) of a record; topic None: the intake topic. Both the
        single and the bulk path send through it."""
        claims = self.settings.claims_topic_in_use()
        if claims is not None and isinstance(record, ReliefRequested):
            # P6 across towns: every request for relief passes the county's claims stage,
            # which forwards it to the town (docs/design.md "one household, many towns")
            return CLAIMS_KEY.encode(), encode(record), claims
        return record.town.encode("utf-8"), encode(record), None

    async def send(self, record: Record) -> Ack:
        key, value, topic = self.route(record)
        return await self.sink.send(key, value, topic=topic)
