"""Reconciliation: the processor's view of each town reserve against the ledger's balance
(docs/design.md "the processor's view of each reserve equals the ledger's balance once the ledger
has caught up; a check reports any difference")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True)
class ReserveDifference:
    town: str
    view_fen: int | None  # None: the view does not know the town
    ledger_fen: int | None  # None: the ledger has no reserve account for the town
    difference_fen: int  # view - ledger (missing counts as 0)


def reconcile(
    view_available_fen: Mapping[str, int], ledger_reserves_fen: Mapping[str, int]
) -> list[ReserveDifference]:
    """Towns whose available reserve differs between `view_available_fen` ({town: fen}, e.g.
    the processor's state) and the ledger (`{town: debits - credits of town_reserve:town}`).
    An empty list means they agree."""
    out: list[ReserveDifference] = []
    for town in sorted(set(view_available_fen) | set(ledger_reserves_fen)):
        view = view_available_fen.get(town)
        ledger = ledger_reserves_fen.get(town)
        difference = (view or 0) - (ledger or 0)
        if difference != 0:
            out.append(ReserveDifference(town, view, ledger, difference))
    return out
