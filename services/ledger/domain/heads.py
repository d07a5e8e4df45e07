"""Each day's head of the ledger, published outside the database (docs/design.md
"tamper-evident").

The seals stop anyone without the chain key from adding rows; they do not stop someone who
holds the database's owner role from rewriting history wholesale (triggers off, rows
removed, the chain rebuilt). A head written to a file that finance signs and keeps (and
that `verify --published` checks) pins every chain as it stood that day: an entry
removed or changed before it can no longer be hidden.

The document is deterministic JSON (sorted keys, one spelling per value), so a signature
over the file (`gpg --detach-sign`, or finance's own seal) stays valid wherever it is kept.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

DOCUMENT_KIND = "relief.ledger.head.v1"
# a head file is a few hundred bytes per town; anything far larger is not one
MAX_DOCUMENT_BYTES = 1_000_000


class HeadFileError(ValueError):
    """A published head file that cannot be read as one (says where)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PublishedHead:
    day: date
    chain: str
    chain_seq: int
    hash: bytes


def head_document(
    *,
    day: date,
    published_at: datetime,
    head_hash: bytes,
    chain_heads: Mapping[str, bytes],
    chain_seqs: Mapping[str, int],
    entries_checked: int,
    key_id: str | None,
) -> str:
    doc: dict[str, Any] = {
        "kind": DOCUMENT_KIND,
        "day": day.isoformat(),
        "published_at": published_at.isoformat(timespec="seconds"),
        "head_hash": head_hash.hex(),
        "entries_checked": entries_checked,
        "chain_key_id": key_id,
        "chains": {
            chain: {"chain_seq": chain_seqs[chain], "hash": chain_heads[chain].hex()}
            for chain in sorted(chain_heads)
        },
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def parse_head_document(text: str, where: str) -> list[PublishedHead]:
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise HeadFileError(f"{where}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        doc = json.loads(text)
        if doc.get("kind") != DOCUMENT_KIND:
            raise HeadFileError(f"{where}: kind is not {DOCUMENT_KIND}")
        day = date.fromisoformat(doc["day"])
        heads = []
        for chain, head in sorted(doc["chains"].items()):
            digest = bytes.fromhex(head["hash"])
            if len(digest) != 32 or not isinstance(head["chain_seq"], int):
                raise HeadFileError(f"{where}: chains.{chain} is not a 32-byte hash and a seq")
            heads.append(PublishedHead(day, chain, head["chain_seq"], digest))
        return heads
    except HeadFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HeadFileError(f"{where}: not a published head ({exc})") from exc
