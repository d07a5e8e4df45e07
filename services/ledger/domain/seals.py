"""What the ledger writer seals, and how (docs/design.md "tamper-evident").

The hash chain is unkeyed: it shows that nothing inside it was changed, but anyone who may
INSERT can append an entry that chains correctly. The writer therefore seals each row it
stores with an HMAC under the chain key (RELIEF_LEDGER_CHAIN_KEY), a key no database role
holds; `verify` checks every seal. Sealed are:

- an entry: its hash (which covers its content, its lines and the hash before it);
- an alert (a posting the reserve guard refused): its id and figures — a forged alert
  would make a real posting with that id look like a duplicate and be dropped;
- a consumer position: topic, partition, next offset — a forged position would make the
  writer skip postings.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from relief_platform.secrets import Sealer
from services.ledger.domain.entries import format_time

ENTRY = "ledger.entry.v1"
ALERT = "ledger.alert.v1"
POSITION = "ledger.position.v1"


def entry_payload(entry_hash: bytes) -> bytes:
    return entry_hash


def alert_payload(
    *,
    posting_id: uuid.UUID,
    town: str,
    kind: str,
    reason: str,
    account: str,
    balance_fen: int,
    change_fen: int,
    occurred_at: datetime,
) -> bytes:
    doc = [
        str(posting_id),
        town,
        kind,
        reason,
        account,
        balance_fen,
        change_fen,
        format_time(occurred_at),
    ]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def position_payload(topic: str, partition: int, next_offset: int) -> bytes:
    return json.dumps([topic, partition, next_offset], separators=(",", ":")).encode()


def seal_entry(sealer: Sealer, entry_hash: bytes) -> bytes:
    return sealer.seal(ENTRY, entry_payload(entry_hash))


def seal_position(sealer: Sealer, topic: str, partition: int, next_offset: int) -> bytes:
    return sealer.seal(POSITION, position_payload(topic, partition, next_offset))
