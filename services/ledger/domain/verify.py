"""Verification of the journal from its rows: the hash chains, each posting's balance and
every account's balance, recomputed from the lines (docs/design.md "tamper-evident").

Fed entry by entry in chain order (chain, chain_seq), it reports the first entry of each
chain where the stored journal and the recomputation disagree. Everything after a broken
link of a chain is suspect, so a chain is not checked further once broken.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import date

from relief_platform.secrets import Sealer
from schemas.envelope import CST
from services.ledger.domain import seals
from services.ledger.domain.accounts import (
    AccountError,
    Side,
    normal_balance,
    parse_account,
)
from services.ledger.domain.entries import GENESIS_HASH, Entry, entry_hash, head_hash

PAID_PREFIX = "relief_paid:"


@dataclasses.dataclass(frozen=True, slots=True)
class DayFigure:
    """Postings of one China Standard Time day, town and kind: how many, their debits,
    and the part paid out to households (relief_paid) - migration 0008's row."""

    postings: int = 0
    debit_fen: int = 0
    paid_fen: int = 0


DayKey = tuple[date, str, str]  # (CST day, town, kind)

NOT_SEALED = (
    "not sealed by the ledger writer (inserted around it, or stored before the chain key: "
    "rebuild such a ledger by replay)"
)
BAD_SEAL = "seal does not match: not written by the ledger writer (forged)"


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    chain: str
    chain_seq: int | None
    posting_id: uuid.UUID | None
    reason: str

    def describe(self) -> str:
        where = (
            f"entry {self.posting_id} (chain {self.chain} #{self.chain_seq})"
            if self.posting_id is not None
            else f"chain {self.chain}"
        )
        return f"{where}: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyReport:
    entries_checked: int
    chain_heads: dict[str, bytes]  # chain -> hash of its last verified entry
    chain_seqs: dict[str, int]  # chain -> position of its last verified entry
    head_hash: bytes  # the one hash to publish
    balances_fen: dict[str, int]  # account -> normal-side balance, from the lines
    problems: tuple[Problem, ...]
    # the writer's seals were checked (with the chain key); without the key only the
    # unkeyed chain was, which anyone with INSERT can extend
    seals_checked: bool = False
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclasses.dataclass(slots=True)
class _Chain:
    seq: int = 0
    hash: bytes = GENESIS_HASH
    broken: bool = False


class Verifier:
    """Feed entries in (chain, chain_seq) order, then ask for the report."""

    def __init__(self, sealer: Sealer | None = None) -> None:
        self._sealer = sealer
        self._chains: dict[str, _Chain] = {}
        self._debits: dict[str, int] = {}
        self._credits: dict[str, int] = {}
        self._days: dict[DayKey, DayFigure] = {}
        self._problems: list[Problem] = []
        self._checked = 0

    def _fail(self, state: _Chain, entry: Entry, reason: str) -> None:
        state.broken = True
        self._problems.append(Problem(entry.chain, entry.chain_seq, entry.posting_id, reason))

    def feed(self, entry: Entry) -> None:
        state = self._chains.setdefault(entry.chain, _Chain())
        if state.broken:
            return
        self._checked += 1
        if entry.chain_seq != state.seq + 1:
            self._fail(state, entry, f"expected chain position #{state.seq + 1}: entries missing")
            return
        if entry.prev_hash != state.hash:
            self._fail(state, entry, "prev_hash is not the hash of the entry before it")
            return
        if entry_hash(entry) != entry.hash:
            self._fail(state, entry, "hash does not match the entry's content: altered")
            return
        if self._sealer is not None and not self._sealer.valid(
            seals.ENTRY, seals.entry_payload(entry.hash), entry.seal
        ):
            self._fail(state, entry, NOT_SEALED if entry.seal is None else BAD_SEAL)
            return
        problem = _line_problem(entry)
        if problem is not None:
            self._fail(state, entry, problem)
            return
        debit_fen = paid_fen = 0
        for line in entry.lines:
            book = self._debits if line.side == Side.DEBIT else self._credits
            book[line.account] = book.get(line.account, 0) + line.amount_fen
            if line.side == Side.DEBIT:
                debit_fen += line.amount_fen
                if line.account.startswith(PAID_PREFIX):
                    paid_fen += line.amount_fen
        key = (entry.occurred_at.astimezone(CST).date(), entry.town, entry.kind)
        day = self._days.get(key, DayFigure())
        self._days[key] = DayFigure(
            day.postings + 1, day.debit_fen + debit_fen, day.paid_fen + paid_fen
        )
        state.seq = entry.chain_seq
        state.hash = entry.hash

    def note(self, chain: str, reason: str) -> None:
        """A problem found outside the chains (e.g. lines without an entry); once, however
        many runs carrying on find it again."""
        problem = Problem(chain, None, None, reason)
        if problem not in self._problems:
            self._problems.append(problem)

    def balances_fen(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for account in sorted(set(self._debits) | set(self._credits)):
            kind = parse_account(account).kind
            out[account] = normal_balance(
                kind, self._debits.get(account, 0), self._credits.get(account, 0)
            )
        return out

    def day_figures(self) -> dict[DayKey, DayFigure]:
        """The day figures recomputed from the entries fed so far."""
        return dict(self._days)

    def positions(self) -> dict[str, tuple[int, bytes]]:
        """chain -> (position, hash) of its last verified entry: where to carry on."""
        return {chain: (s.seq, s.hash) for chain, s in self._chains.items() if not s.broken}

    def report(
        self,
        stored_balances_fen: Mapping[str, int] | None = None,
        stored_days: Mapping[DayKey, DayFigure] | None = None,
        stored_reserves_fen: Mapping[str, int] | None = None,
    ) -> VerifyReport:
        """`stored_balances_fen`: the balances the read side serves (normal side), compared
        with the ones recomputed from the verified entries; `stored_days`: the running day
        figures (0008) and `stored_reserves_fen` the reserve guard's balances (0005),
        compared likewise. Only when the chains hold: after a broken link the sums are of
        the entries before it, and would differ anyway."""
        balances = self.balances_fen()
        problems = list(self._problems)
        total_debits = sum(self._debits.values())
        total_credits = sum(self._credits.values())
        if not any(p.posting_id is not None for p in problems) and total_debits != total_credits:
            problems.append(
                Problem("*", None, None, f"debits {total_debits} != credits {total_credits}")
            )
        for account, balance in balances.items():
            if account.startswith("town_reserve:") and balance < 0:
                problems.append(
                    Problem(account.split(":", 1)[1], None, None, f"{account} is {balance} fen")
                )
        if stored_balances_fen is not None and not problems:
            for account in sorted(set(balances) | set(stored_balances_fen)):
                recomputed = balances.get(account, 0)
                stored = stored_balances_fen.get(account, 0)
                if recomputed != stored:
                    problems.append(
                        Problem(
                            account.split(":", 1)[-1],
                            None,
                            None,
                            f"balance of {account}: read side {stored} fen, "
                            f"recomputed from the journal {recomputed} fen",
                        )
                    )
        if stored_reserves_fen is not None and not problems:
            for account, stored in sorted(stored_reserves_fen.items()):
                if balances.get(account, 0) != stored:
                    problems.append(
                        Problem(
                            "*",
                            None,
                            None,
                            f"running balance of {account} is {stored} fen, the journal's "
                            f"lines sum to {balances.get(account, 0)} fen",
                        )
                    )
        if stored_days is not None and not problems:
            for key in sorted(set(self._days) | set(stored_days)):
                if self._days.get(key, DayFigure()) != stored_days.get(key, DayFigure()):
                    day, town, kind = key
                    problems.append(
                        Problem(
                            town,
                            None,
                            None,
                            f"day figures of {kind} on {day}: read side "
                            f"{stored_days.get(key, DayFigure())}, recomputed from the "
                            f"journal {self._days.get(key, DayFigure())}",
                        )
                    )
        heads = {chain: state.hash for chain, state in sorted(self._chains.items())}
        return VerifyReport(
            entries_checked=self._checked,
            chain_heads=heads,
            chain_seqs={chain: state.seq for chain, state in sorted(self._chains.items())},
            head_hash=head_hash(heads),
            balances_fen=balances,
            problems=tuple(problems),
            seals_checked=self._sealer is not None,
            key_id=None if self._sealer is None else self._sealer.key_id,
        )


def _line_problem(entry: Entry) -> str | None:
    if len(entry.lines) < 2:
        return f"{len(entry.lines)} line(s): a posting has at least two"
    debit_fen = credit_fen = 0
    for line in entry.lines:
        try:
            parse_account(line.account)
        except AccountError as exc:
            return str(exc)
        if line.amount_fen <= 0:
            return f"line amount {line.amount_fen} fen is not positive"
        if line.side == Side.DEBIT:
            debit_fen += line.amount_fen
        elif line.side == Side.CREDIT:
            credit_fen += line.amount_fen
        else:
            return f"line side {line.side!r}"
    if debit_fen != credit_fen:
        return f"not balanced: debits {debit_fen} fen, credits {credit_fen} fen"
    return None
