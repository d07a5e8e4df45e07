"""The ledger's pure core: canonical encoding, hash chains, the reserve guard, verification
and reconciliation — no servers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relief_platform.secrets import Sealer
from schemas import money
from schemas.envelope import CST
from schemas.postings import Posting
from services.ledger.domain import seals
from services.ledger.domain.accounts import (
    NORMAL_SIDE,
    AccountError,
    LedgerInvariantError,
    normal_balance,
    parse_account,
)
from services.ledger.domain.entries import (
    GENESIS_HASH,
    MAX_AMOUNT_FEN,
    Entry,
    PostingError,
    canonical_bytes,
    chain_hash,
    check_posting,
    entry_hash,
    head_hash,
    make_entry,
)
from services.ledger.domain.heads import (
    MAX_DOCUMENT_BYTES,
    HeadFileError,
    PublishedHead,
    head_document,
    parse_head_document,
)
from services.ledger.domain.plan import (
    ChainHead,
    chains_of,
    plan_batch,
    reserve_accounts_touched,
)
from services.ledger.domain.reconcile import ReserveDifference, reconcile
from services.ledger.domain.verify import BAD_SEAL, NOT_SEALED, DayFigure, Problem, Verifier
from tests.unit.ledger.stories import (
    FLOOD_AT,
    QIFENG,
    RESERVE_FEN,
    SUOZHEN,
    flood,
    funded,
    granted,
    incoming,
    paid,
    raw_incoming,
)


def chain_of(postings: list[Posting]) -> list[Entry]:
    plan = plan_batch([incoming(p, i) for i, p in enumerate(postings)], {}, {}, [])
    return [e for e, _ in plan.entries]


# ---------------------------------------------------------------- accounts


def test_account_codes_name_kind_and_scope() -> None:
    a = parse_account(f"town_reserve:{SUOZHEN}")
    assert (a.kind, a.town, a.is_reserve) == ("town_reserve", SUOZHEN, True)
    assert parse_account("county_fund:county").normal_side == "credit"
    for bad in ("town_reserve", "piggy_bank:county", "town_reserve:Suozhen", "x" * 65):
        with pytest.raises(AccountError):
            parse_account(bad)


def test_normal_balance_is_on_the_accounts_side() -> None:
    assert normal_balance("town_reserve", 500, 200) == 300
    assert normal_balance("county_fund", 200, 500) == 300


def test_an_account_is_named_for_its_kind_and_where_it_is() -> None:
    """The names the book stores with its accounts (and the read side shows)."""
    assert parse_account("county_fund:county").name == "County relief fund (county)"
    assert parse_account(f"town_reserve:{SUOZHEN}").name == (
        f"Town reserve, available (town {SUOZHEN})"
    )
    assert parse_account(f"relief_paid:{QIFENG}").name == (
        f"Relief paid to households (town {QIFENG})"
    )


def test_only_a_towns_available_reserve_is_the_reserve_r4_guards() -> None:
    reserves = {kind for kind in NORMAL_SIDE if parse_account(f"{kind}:{SUOZHEN}").is_reserve}
    assert reserves == {"town_reserve"}


def test_an_account_code_past_64_characters_is_refused_for_its_length() -> None:
    with pytest.raises(AccountError, match=r"^account code longer than 64 characters$"):
        parse_account("town_reserve:" + "1" * 52)  # 65
    with pytest.raises(AccountError, match="scope must be a town code"):
        parse_account("town_reserve:" + "1" * 51)  # 64: read, and refused for its scope


# ---------------------------------------------------------------- canonical encoding, hashes


def content_bytes(entry: Any) -> bytes:
    """The canonical bytes of what an entry's hash covers, spelled out field by field."""
    return canonical_bytes(
        posting_id=entry.posting_id,
        chain=entry.chain,
        chain_seq=entry.chain_seq,
        kind=entry.kind,
        town=entry.town,
        correlation_id=entry.correlation_id,
        causation_id=entry.causation_id,
        occurred_at=entry.occurred_at,
        memo=entry.memo,
        lines=entry.lines,
    )


def test_canonical_encoding_is_fixed_so_replays_give_the_same_hash() -> None:
    entry = make_entry(incoming(funded(SUOZHEN)), 1, GENESIS_HASH)
    # the same instant in another zone encodes the same way
    cst = timezone(timedelta(hours=8))
    same = dataclasses.replace(entry, occurred_at=entry.occurred_at.astimezone(cst))
    assert entry_hash(same) == entry.hash
    body = content_bytes(entry)
    assert body.startswith(b'{"causation_id":')
    assert b'"occurred_at":"2024-07-01T00:30:00.000000Z"' in body
    # golden value: changing the encoding silently would break every published head
    assert entry.hash.hex() == ("182f9b026c7e741bbfc4bf79aaccb6a940b5040813a5518a7373c293d870fd9b")
    assert len(entry.hash) == 32


def test_hash_covers_every_field_and_the_previous_hash() -> None:
    entry = make_entry(incoming(granted(QIFENG, 1, 1_000)), 2, b"\x01" * 32)
    changes: dict[str, Any] = {
        "memo": "edited",
        "kind": "other",
        "chain_seq": 3,
        "prev_hash": b"\x02" * 32,
        "occurred_at": entry.occurred_at + timedelta(microseconds=1),
        "causation_id": None,
        "correlation_id": "case-x",
        "lines": (entry.lines[0], dataclasses.replace(entry.lines[1], amount_fen=999)),
    }
    for field, value in changes.items():
        assert entry_hash(dataclasses.replace(entry, **{field: value})) != entry.hash, field


def test_book_refuses_what_it_cannot_hold() -> None:
    ok = [(f"town_reserve:{SUOZHEN}", "debit", 5), ("county_fund:county", "credit", 5)]
    check_posting(raw_incoming(SUOZHEN, ok))
    bad_cases = {
        "unbalanced": [
            (f"town_reserve:{SUOZHEN}", "debit", 5),
            ("county_fund:county", "credit", 4),
        ],
        "zero": [(f"town_reserve:{SUOZHEN}", "debit", 0), ("county_fund:county", "credit", 0)],
        "negative": [
            (f"town_reserve:{SUOZHEN}", "debit", -5),
            ("county_fund:county", "credit", -5),
        ],
        "one line": [(f"town_reserve:{SUOZHEN}", "debit", 5)],
        "another town": [
            (f"town_reserve:{QIFENG}", "debit", 5),
            ("county_fund:county", "credit", 5),
        ],
        "side": [(f"town_reserve:{SUOZHEN}", "up", 5), ("county_fund:county", "credit", 5)],
    }
    for name, lines in bad_cases.items():
        with pytest.raises(PostingError):
            check_posting(raw_incoming(SUOZHEN, lines))
        assert name
    nul = dataclasses.replace(raw_incoming(SUOZHEN, ok), memo="a\x00b")
    with pytest.raises(PostingError):
        check_posting(nul)


def test_a_posting_within_every_limit_of_the_book_is_taken_and_one_past_any_is_refused() -> None:
    """The book's own limits (as the SQL CHECKs): 1..64 characters of kind, a memo up to
    2,000, 2..64 lines, 1 fen up to 10 million yuan a line; each refusal says which."""
    reserve, fund = f"town_reserve:{SUOZHEN}", "county_fund:county"
    assert MAX_AMOUNT_FEN == money.MAX_AMOUNT_FEN == 1_000_000_000
    top = MAX_AMOUNT_FEN
    ok = raw_incoming(SUOZHEN, [(reserve, "debit", top), (fund, "credit", top)])
    debits = [(reserve, "debit", 1)] * 63
    many = raw_incoming(SUOZHEN, [*debits, (fund, "credit", 63)])
    three = raw_incoming(SUOZHEN, [(reserve, "debit", 3), (fund, "credit", 1), (fund, "credit", 2)])
    for taken in (
        ok,
        many,
        three,
        dataclasses.replace(ok, kind="k"),
        dataclasses.replace(ok, kind="k" * 64),
        dataclasses.replace(ok, memo="m" * 2_000),
    ):
        check_posting(taken)
    refused = {
        "kind must be 1..64 characters": [
            dataclasses.replace(ok, kind=""),
            dataclasses.replace(ok, kind="k" * 65),
        ],
        "memo longer than 2000 characters": [dataclasses.replace(ok, memo="m" * 2_001)],
        "a posting has 2..64 lines, got 65": [
            raw_incoming(SUOZHEN, [*debits, (reserve, "debit", 1), (fund, "credit", 64)])
        ],
        "a posting has 2..64 lines, got 1": [raw_incoming(SUOZHEN, [(reserve, "debit", 5)])],
        f"amount_fen must be 1..{top}, got {top + 1}": [
            raw_incoming(SUOZHEN, [(reserve, "debit", top + 1), (fund, "credit", top + 1)])
        ],
    }
    for reason, postings in refused.items():
        for posting in postings:
            with pytest.raises(PostingError, match=f"^{re.escape(reason)}$"):
                check_posting(posting)


def test_a_posting_balances_to_the_fen_either_way_and_says_by_how_much() -> None:
    reserve, fund = f"town_reserve:{SUOZHEN}", "county_fund:county"
    for debit, credit in ((5, 4), (4, 5)):
        with pytest.raises(
            PostingError, match=f"^not balanced: debits {debit} fen, credits {credit} fen$"
        ):
            check_posting(
                raw_incoming(SUOZHEN, [(reserve, "debit", debit), (fund, "credit", credit)])
            )
    # a side the book does not know is refused as such, even where it would balance
    for side in ("sideways", "asset", "Credit"):
        lines = [(reserve, "debit", 10), (fund, "credit", 5), (fund, side, 5)]
        with pytest.raises(PostingError, match=f"^side must be debit or credit, got '{side}'$"):
            check_posting(raw_incoming(SUOZHEN, lines))


def test_an_amount_is_a_whole_number_of_fen_never_a_bool_a_float_or_text() -> None:
    ok = raw_incoming(
        SUOZHEN, [(f"town_reserve:{SUOZHEN}", "debit", 1), ("county_fund:county", "credit", 1)]
    )
    not_fen: tuple[Any, ...] = (True, 1.0, "1", None)
    for amount in not_fen:
        debit = dataclasses.replace(ok.lines[0], amount_fen=amount)
        with pytest.raises(PostingError, match=r"^amount_fen must be an integer number of fen$"):
            check_posting(dataclasses.replace(ok, lines=(debit, ok.lines[1])))


def test_a_posting_with_an_unknown_account_is_refused_as_a_posting() -> None:
    """A bad account code is the record's fault (relief.rejected.v1), not a bug: it is a
    PostingError, which the batch planner and the consumer know, never an AccountError."""
    for code in ("piggy_bank:county", "town_reserve:Suozhen"):
        with pytest.raises(PostingError, match="account") as refused:
            lines = [(code, "debit", 5), ("county_fund:county", "credit", 5)]
            check_posting(raw_incoming(SUOZHEN, lines))
        assert not isinstance(refused.value, AccountError)


def test_a_previous_hash_is_exactly_32_bytes() -> None:
    body = b"{}"
    assert chain_hash(GENESIS_HASH, body) == hashlib.sha256(bytes(32) + body).digest()
    for wrong in (bytes(31), bytes(33), b""):
        with pytest.raises(PostingError, match="a previous hash is 32 bytes"):
            chain_hash(wrong, body)


def test_chinese_text_is_hashed_as_utf_8_not_escaped() -> None:
    entry = make_entry(incoming(granted(QIFENG, 1, 1_000)), 1, GENESIS_HASH)
    body = content_bytes(entry)
    assert '"memo":"紧急救助 advance, case 1"'.encode() in body
    assert b"\\u" not in body


# ---------------------------------------------------------------- batches


def test_a_chain_links_each_entry_to_the_one_before() -> None:
    entries = chain_of([funded(SUOZHEN), granted(SUOZHEN, 1, 100), granted(SUOZHEN, 2, 200)])
    assert [e.chain_seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash


def test_towns_have_their_own_chains_so_interleaving_does_not_change_hashes() -> None:
    story = flood(20, towns=(SUOZHEN, QIFENG))
    suozhen_first = [p for p in story if p.town == SUOZHEN] + [p for p in story if p.town == QIFENG]
    a = {e.posting_id: e.hash for e in chain_of(story)}
    b = {e.posting_id: e.hash for e in chain_of(suozhen_first)}
    assert a == b


def test_a_batch_continues_the_stored_chain() -> None:
    first = chain_of([funded(SUOZHEN)])[0]
    plan = plan_batch(
        [incoming(granted(SUOZHEN, 1, 100))],
        {SUOZHEN: ChainHead(1, first.hash)},
        {f"town_reserve:{SUOZHEN}": RESERVE_FEN},
        [],
    )
    ((entry, _),) = plan.entries
    assert (entry.chain_seq, entry.prev_hash) == (2, first.hash)


def test_postings_seen_before_or_twice_in_a_batch_are_no_ops() -> None:
    fund = funded(SUOZHEN)
    grant = granted(SUOZHEN, 1, 100)
    plan = plan_batch(
        [incoming(fund), incoming(grant), incoming(grant)],
        {},
        {f"town_reserve:{SUOZHEN}": RESERVE_FEN},
        [fund.posting_id],
    )
    assert [p.posting_id for _, p in plan.entries] == [grant.posting_id]
    assert plan.duplicates == 2


def test_reserve_guard_refuses_the_one_posting_that_would_overdraw() -> None:
    reserve = f"town_reserve:{SUOZHEN}"
    batch = [
        incoming(funded(SUOZHEN, amount_fen=1_000)),
        incoming(granted(SUOZHEN, 1, 600)),
        incoming(granted(SUOZHEN, 2, 600)),  # 400 left: refused
        incoming(granted(SUOZHEN, 3, 400)),  # exactly what is left: accepted
    ]
    plan = plan_batch(batch, {}, {}, [])
    assert [e.chain_seq for e, _ in plan.entries] == [1, 2, 3]
    (alert,) = plan.alerts
    assert alert.posting.posting_id == batch[2].posting_id
    assert (alert.account, alert.balance_fen, alert.change_fen) == (reserve, 400, -600)
    # the refused posting takes no place in the chain
    assert plan.entries[2][0].prev_hash == plan.entries[1][0].hash


def test_reserve_guard_counts_what_the_book_already_holds() -> None:
    plan = plan_batch(
        [incoming(granted(SUOZHEN, 1, 101))], {}, {f"town_reserve:{SUOZHEN}": 100}, []
    )
    assert not plan.entries
    assert plan.alerts[0].balance_fen == 100


def test_a_reserve_the_book_never_saw_stands_at_zero() -> None:
    """A town reserve with no balance in the book (missing = 0) refuses even 1 fen, and
    reports 0 as its balance; a posting that leaves it at zero is no overdraft."""
    reserve = f"town_reserve:{SUOZHEN}"
    one_fen = incoming(granted(SUOZHEN, 1, 1))
    plan = plan_batch([one_fen], {}, {}, [])
    assert not plan.entries
    (alert,) = plan.alerts
    assert (alert.account, alert.balance_fen, alert.change_fen) == (reserve, 0, -1)
    there_and_back = raw_incoming(SUOZHEN, [(reserve, "debit", 5), (reserve, "credit", 5)])
    plan = plan_batch([there_and_back], {}, {}, [])
    assert not plan.alerts
    assert [p.posting_id for _, p in plan.entries] == [there_and_back.posting_id]


def test_a_batch_names_each_account_its_entries_use_once_and_in_order() -> None:
    plan = plan_batch(
        [
            incoming(granted(QIFENG, 1, 100)),  # Qifeng's reserve is empty: refused
            incoming(funded(SUOZHEN)),
            incoming(granted(SUOZHEN, 1, 100)),
            incoming(paid(SUOZHEN, 2, 100)),
        ],
        {},
        {},
        [],
    )
    assert len(plan.alerts) == 1
    assert [a.code for a in plan.accounts] == [
        "county_fund:county",
        f"relief_paid:{SUOZHEN}",
        f"town_reserve:{SUOZHEN}",
        f"town_reserve_held:{SUOZHEN}",
    ]
    assert plan.accounts[2] == parse_account(f"town_reserve:{SUOZHEN}")


def test_the_book_reads_the_chains_and_the_reserves_a_batch_touches() -> None:
    batch = [
        incoming(paid(QIFENG, 2, 100)),
        incoming(funded(SUOZHEN)),
        incoming(granted(QIFENG, 1, 100)),
        incoming(granted(SUOZHEN, 1, 100)),
    ]
    assert chains_of(batch) == [SUOZHEN, QIFENG]
    # the reserve guard's balances: available reserves only, each once, in order
    assert reserve_accounts_touched(batch) == [f"town_reserve:{SUOZHEN}", f"town_reserve:{QIFENG}"]
    assert reserve_accounts_touched(batch[:1]) == []


def test_a_posting_the_book_refuses_inside_a_batch_is_a_bug_that_names_it() -> None:
    bad = raw_incoming(
        SUOZHEN, [(f"town_reserve:{SUOZHEN}", "debit", 5), ("county_fund:county", "credit", 4)]
    )
    with pytest.raises(LedgerInvariantError, match=f"posting {bad.posting_id}: not balanced"):
        plan_batch([incoming(funded(SUOZHEN)), bad], {}, {}, [])


# ---------------------------------------------------------------- verification


def verify(entries: list[Entry]) -> list[str]:
    v = Verifier()
    for e in sorted(entries, key=lambda e: (e.chain, e.chain_seq)):
        v.feed(e)
    return [p.describe() for p in v.report().problems]


def test_verify_accepts_the_journal_as_written() -> None:
    entries = chain_of(flood(30))
    v = Verifier()
    for e in sorted(entries, key=lambda e: (e.chain, e.chain_seq)):
        v.feed(e)
    report = v.report()
    assert report.ok and report.entries_checked == len(entries)
    assert report.head_hash == head_hash(report.chain_heads)
    assert (
        sum(b for a, b in report.balances_fen.items() if a.startswith("county_fund"))
        == 3 * RESERVE_FEN
    )


def test_verify_sums_each_china_standard_time_day_and_carries_on_where_it_stopped() -> None:
    """The day figures (0008) fall on China Standard Time days: 16:00 UTC is the next day's
    midnight. Fed in two runs, a verifier reports what one run over everything reports."""
    entries = chain_of([*flood(12), granted(SUOZHEN, 930, 700), paid(SUOZHEN, 931, 700)])
    ordered = sorted(entries, key=lambda e: (e.chain, e.chain_seq))
    whole = Verifier()
    for e in ordered:
        whole.feed(e)
    in_two = Verifier()
    half = len(ordered) // 2
    for e in ordered[:half]:
        in_two.feed(e)
    assert in_two.report().ok
    for e in ordered[half:]:
        in_two.feed(e)
    assert in_two.report() == whole.report()
    days = whole.day_figures()
    july1, july2 = datetime(2024, 7, 1).date(), datetime(2024, 7, 2).date()
    # FLOOD_AT + 930 minutes is 16:00 UTC: 00:00 on 2 July in China
    assert days[(july2, SUOZHEN, "payment_confirmed")].paid_fen == 700
    assert days[(july2, SUOZHEN, "advance_granted")].debit_fen == 700
    assert sum(f.postings for f in days.values()) == len(entries)
    assert all(day in (july1, july2) for day, _, _ in days)
    report = whole.report(stored_days={**days, (july1, SUOZHEN, "advance_granted"): DayFigure()})
    assert any("day figures of advance_granted on 2024-07-01" in p.reason for p in report.problems)


def test_verify_names_the_altered_entry() -> None:
    entries = chain_of(flood(30))
    victim = entries[10]
    line = dataclasses.replace(victim.lines[0], amount_fen=victim.lines[0].amount_fen + 100)
    entries[10] = dataclasses.replace(victim, lines=(line, victim.lines[1]))
    (problem,) = verify(entries)
    assert str(victim.posting_id) in problem and "altered" in problem


def test_verify_names_a_consistent_forgery_by_its_hash() -> None:
    entries = chain_of(flood(30))
    victim = entries[7]
    forged = dataclasses.replace(victim, memo="forged")
    entries[7] = dataclasses.replace(forged, hash=entry_hash(forged))  # rehashed, but the
    problems = verify(entries)  # next entry still links to the original hash
    assert len(problems) == 1 and "prev_hash" in problems[0]


def test_verify_finds_every_rehashed_forgery_by_the_link_after_it() -> None:
    entries = chain_of(flood(12, towns=(SUOZHEN,)))
    for n, victim in enumerate(entries[:-1]):
        forged = dataclasses.replace(victim, memo=f"forged {n}")
        forged = dataclasses.replace(forged, hash=entry_hash(forged))
        after = entries[n + 1]
        assert verify([*entries[:n], forged, *entries[n + 1 :]]) == [
            f"entry {after.posting_id} (chain {SUOZHEN} #{after.chain_seq}): "
            "prev_hash is not the hash of the entry before it"
        ], n


def test_verify_finds_an_entry_renumbered_to_an_earlier_position() -> None:
    entries = chain_of([funded(SUOZHEN), granted(SUOZHEN, 1, 100), granted(SUOZHEN, 2, 100)])
    renumbered = dataclasses.replace(entries[2], chain_seq=2)
    renumbered = dataclasses.replace(renumbered, hash=entry_hash(renumbered))
    v = Verifier()
    for e in [*entries[:2], renumbered]:
        v.feed(e)
    assert [p.describe() for p in v.report().problems] == [
        f"entry {renumbered.posting_id} (chain {SUOZHEN} #2): "
        "expected chain position #3: entries missing"
    ]


def test_verify_names_the_entry_after_a_deleted_one() -> None:
    entries = chain_of(flood(30))
    gone = entries.pop(4)
    after = next(e for e in entries if e.chain == gone.chain and e.chain_seq == gone.chain_seq + 1)
    (problem,) = verify(entries)
    assert problem == (
        f"entry {after.posting_id} (chain {gone.chain} #{after.chain_seq}): "
        f"expected chain position #{gone.chain_seq}: entries missing"
    )


def test_verify_carries_on_from_each_chains_last_verified_entry_but_not_a_broken_one() -> None:
    entries = chain_of(flood(8, towns=(SUOZHEN, QIFENG)))
    suozhen = [e for e in entries if e.chain == SUOZHEN]
    qifeng = [e for e in entries if e.chain == QIFENG]
    altered = dataclasses.replace(qifeng[3], memo="altered")
    v = verified([*suozhen, *qifeng[:3], altered, *qifeng[4:]])
    assert v.positions() == {SUOZHEN: (suozhen[-1].chain_seq, suozhen[-1].hash)}
    assert verified(entries).positions() == {
        SUOZHEN: (suozhen[-1].chain_seq, suozhen[-1].hash),
        QIFENG: (qifeng[-1].chain_seq, qifeng[-1].hash),
    }


def test_verify_reports_a_read_side_balance_that_disagrees() -> None:
    entries = chain_of([funded(SUOZHEN)])
    v = Verifier()
    v.feed(entries[0])
    report = v.report(
        {f"town_reserve:{SUOZHEN}": RESERVE_FEN + 1, "county_fund:county": RESERVE_FEN}
    )
    assert not report.ok and "read side" in report.problems[0].reason


def verified(entries: list[Entry]) -> Verifier:
    v = Verifier()
    for e in sorted(entries, key=lambda e: (e.chain, e.chain_seq)):
        v.feed(e)
    return v


def test_verify_finds_every_altered_entry_whichever_way_its_hash_changed() -> None:
    entries = chain_of(flood(12, towns=(SUOZHEN,)))
    for n, victim in enumerate(entries):
        altered = [e if e is not victim else dataclasses.replace(e, memo=f"x{n}") for e in entries]
        (problem,) = verify(altered)
        assert problem.endswith("hash does not match the entry's content: altered"), n
        assert f"#{victim.chain_seq})" in problem


def test_verify_finds_an_entry_that_breaks_the_books_rules_though_its_hash_holds() -> None:
    """An entry hashed right but written around the writer's checks: verify recomputes
    the book's rules from the lines (every invariant twice)."""
    reserve, fund = f"town_reserve:{SUOZHEN}", "county_fund:county"
    start = make_entry(incoming(funded(SUOZHEN)), 1, GENESIS_HASH)
    broken = {
        "1 line(s): a posting has at least two": [(reserve, "debit", 5)],
        "not balanced: debits 5 fen, credits 4 fen": [(reserve, "debit", 5), (fund, "credit", 4)],
        "line amount 0 fen is not positive": [(reserve, "debit", 0), (fund, "credit", 0)],
        "line amount -5 fen is not positive": [(reserve, "debit", -5), (fund, "credit", -5)],
        "not balanced: debits 4 fen, credits 5 fen": [(reserve, "debit", 4), (fund, "credit", 5)],
        "line side 'up'": [(reserve, "up", 5), (fund, "credit", 5)],
        "line side 'asset'": [(reserve, "debit", 5), (fund, "asset", 5)],
        "unknown account kind in 'piggy_bank:county'": [
            (reserve, "debit", 5),
            ("piggy_bank:county", "credit", 5),
        ],
    }
    for reason, lines in broken.items():
        last = make_entry(raw_incoming(SUOZHEN, lines), 2, start.hash)
        assert verify([start, last]) == [f"entry {last.posting_id} (chain {SUOZHEN} #2): {reason}"]
    three = [(reserve, "debit", 5), (fund, "credit", 2), (fund, "credit", 3)]
    assert verify([start, make_entry(raw_incoming(SUOZHEN, three), 2, start.hash)]) == []


def test_verify_finds_a_town_reserve_below_zero_and_lets_one_at_zero_be() -> None:
    reserve = f"town_reserve:{SUOZHEN}"
    at_zero = chain_of([funded(SUOZHEN, amount_fen=100), granted(SUOZHEN, 1, 100)])
    report = verified(at_zero).report()
    assert report.ok and report.balances_fen[reserve] == 0
    # entries written around the reserve guard
    for funded_fen, granted_fen in ((0, 100), (100, 101)):
        story = [granted(SUOZHEN, 1, granted_fen)]
        if funded_fen:
            story.insert(0, funded(SUOZHEN, amount_fen=funded_fen))
        below, head = [], GENESIS_HASH
        for n, p in enumerate(story, start=1):
            below.append(make_entry(incoming(p), n, head))
            head = below[-1].hash
        short = funded_fen - granted_fen
        assert verified(below).report().problems == (
            Problem(SUOZHEN, None, None, f"{reserve} is {short} fen"),
        )


def test_verify_compares_the_read_sides_balances_each_way() -> None:
    reserve, fund = f"town_reserve:{SUOZHEN}", "county_fund:county"
    v = verified(chain_of([funded(SUOZHEN)]))
    assert v.report({reserve: RESERVE_FEN, fund: RESERVE_FEN, f"relief_paid:{QIFENG}": 0}).ok
    for account, stored, recomputed, chain in (
        (reserve, RESERVE_FEN + 1, RESERVE_FEN, SUOZHEN),
        (fund, RESERVE_FEN - 1, RESERVE_FEN, "county"),
        (f"relief_paid:{QIFENG}", 7, 0, QIFENG),
    ):
        read_side = {reserve: RESERVE_FEN, fund: RESERVE_FEN, account: stored}
        assert v.report(read_side).problems == (
            Problem(
                chain,
                None,
                None,
                f"balance of {account}: read side {stored} fen, "
                f"recomputed from the journal {recomputed} fen",
            ),
        )
    # an account the read side leaves out stands at zero there
    at_zero = verified(chain_of([funded(SUOZHEN, amount_fen=100), granted(SUOZHEN, 1, 100)]))
    held = f"town_reserve_held:{SUOZHEN}"
    assert at_zero.report({fund: 100, held: 100}).ok
    assert at_zero.report({held: 100}).problems == (
        Problem(
            "county",
            None,
            None,
            f"balance of {fund}: read side 0 fen, recomputed from the journal 100 fen",
        ),
    )


def test_verify_compares_the_reserve_guards_running_balances_each_way() -> None:
    reserve = f"town_reserve:{SUOZHEN}"
    v = verified(chain_of([funded(SUOZHEN), granted(SUOZHEN, 1, 100)]))
    left = RESERVE_FEN - 100
    assert v.report(stored_reserves_fen={reserve: left, f"town_reserve:{QIFENG}": 0}).ok
    for account, stored, recomputed in (
        (reserve, left - 1, left),
        (reserve, left + 1, left),
        (f"town_reserve:{QIFENG}", 1, 0),
    ):
        assert v.report(stored_reserves_fen={account: stored}).problems == (
            Problem(
                "*",
                None,
                None,
                f"running balance of {account} is {stored} fen, the journal's lines sum to "
                f"{recomputed} fen",
            ),
        )


def test_verify_lets_day_figures_that_agree_be() -> None:
    v = verified(chain_of(flood(12)))
    assert v.report(stored_days=v.day_figures()).ok


def test_a_problem_found_outside_the_chains_is_reported_once() -> None:
    v = verified(chain_of([funded(SUOZHEN)]))
    for _ in range(3):
        v.note(SUOZHEN, "lines without an entry")
    v.note(QIFENG, "lines without an entry")
    assert v.report().problems == (
        Problem(SUOZHEN, None, None, "lines without an entry"),
        Problem(QIFENG, None, None, "lines without an entry"),
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([SUOZHEN, QIFENG]), st.integers(1, 3_000_000)), max_size=40)
)
def test_any_stream_keeps_reserves_non_negative_and_the_book_balanced(
    grants: list[tuple[str, int]],
) -> None:
    stream = [incoming(funded(SUOZHEN)), incoming(funded(QIFENG))]
    stream += [incoming(granted(t, n + 1, amount)) for n, (t, amount) in enumerate(grants)]
    plan = plan_batch(stream, {}, {}, [])
    assert len(plan.entries) + len(plan.alerts) == len(stream)
    v = Verifier()
    for e, _ in sorted(plan.entries, key=lambda x: (x[0].chain, x[0].chain_seq)):
        v.feed(e)
    report = v.report()
    assert report.ok
    for town in (SUOZHEN, QIFENG):
        left = report.balances_fen.get(f"town_reserve:{town}", 0)
        held = report.balances_fen.get(f"town_reserve_held:{town}", 0)
        assert left >= 0 and left + held == RESERVE_FEN


# ---------------------------------------------------------------- reconciliation


def test_reconciliation_reports_each_town_that_differs() -> None:
    view = {SUOZHEN: 4_900_000, QIFENG: 5_000_000}
    ledger = {SUOZHEN: 4_900_000, QIFENG: 4_990_000, "370321106": 0}
    assert reconcile(view, ledger) == [ReserveDifference(QIFENG, 5_000_000, 4_990_000, 10_000)]
    assert reconcile({"370321107": 1}, {}) == [ReserveDifference("370321107", 1, None, 1)]
    assert reconcile(ledger, ledger) == []


def test_ids_and_times_used_by_the_stories_are_deterministic() -> None:
    assert flood(10) == flood(10)
    assert isinstance(flood(10)[0].posting_id, uuid.UUID)
    assert flood(10)[0].occurred_at.tzinfo is not None
    assert datetime(2024, 7, 1, tzinfo=UTC) < flood(10)[0].occurred_at


def test_a_ledger_shard_is_within_its_count() -> None:
    import pydantic
    import pytest

    from relief_platform.positioned import shard_of
    from services.ledger.app import LedgerSettings

    assert shard_of(LedgerSettings(ledger_shard="1/2").ledger_shard) == (1, 2)
    assert shard_of(LedgerSettings().ledger_shard) is None
    for bad in ("2/2", "1/0", "a/b", "1"):
        with pytest.raises(pydantic.ValidationError):
            LedgerSettings(ledger_shard=bad)


# ---------------------------------------------------------------- published heads

SEALED_AT = datetime(2024, 7, 1, 23, 59, 30, 123456, tzinfo=CST)
HEAD_A, HEAD_B = b"\x01" * 32, b"\x02" * 32


def head_text(chains: dict[str, tuple[int, bytes]]) -> str:
    return head_document(
        day=date(2024, 7, 1),
        published_at=SEALED_AT,
        head_hash=head_hash({chain: h for chain, (_, h) in chains.items()}),
        chain_heads={chain: h for chain, (_, h) in chains.items()},
        chain_seqs={chain: seq for chain, (seq, _) in chains.items()},
        entries_checked=sum(seq for seq, _ in chains.values()),
        key_id="0123456789abcdef",
    )


def test_a_published_head_has_one_spelling_so_a_signature_over_it_stays_valid() -> None:
    text = head_text({QIFENG: (2, HEAD_B), SUOZHEN: (5, HEAD_A)})
    both = head_hash({SUOZHEN: HEAD_A, QIFENG: HEAD_B}).hex()
    # golden text: finance's signature covers these very bytes
    assert text == (
        "{\n"
        '  "chain_key_id": "0123456789abcdef",\n'
        '  "chains": {\n'
        f'    "{SUOZHEN}": {{\n'
        '      "chain_seq": 5,\n'
        f'      "hash": "{HEAD_A.hex()}"\n'
        "    },\n"
        f'    "{QIFENG}": {{\n'
        '      "chain_seq": 2,\n'
        f'      "hash": "{HEAD_B.hex()}"\n'
        "    }\n"
        "  },\n"
        '  "day": "2024-07-01",\n'
        '  "entries_checked": 7,\n'
        f'  "head_hash": "{both}",\n'
        '  "kind": "relief.ledger.head.v1",\n'
        '  "published_at": "2024-07-01T23:59:30+08:00"\n'
        "}\n"
    )
    assert parse_head_document(text, "head.json") == [
        PublishedHead(date(2024, 7, 1), SUOZHEN, 5, HEAD_A),
        PublishedHead(date(2024, 7, 1), QIFENG, 2, HEAD_B),
    ]


def test_a_head_file_written_by_hand_is_read_chain_by_chain_in_order() -> None:
    doc = {
        "kind": "relief.ledger.head.v1",
        "day": "2024-07-02",
        "chains": {
            QIFENG: {"chain_seq": 0, "hash": HEAD_B.hex()},
            SUOZHEN: {"chain_seq": 9, "hash": HEAD_A.hex()},
        },
    }
    assert parse_head_document(json.dumps(doc), "by-hand.json") == [
        PublishedHead(date(2024, 7, 2), SUOZHEN, 9, HEAD_A),
        PublishedHead(date(2024, 7, 2), QIFENG, 0, HEAD_B),
    ]


def test_a_head_file_up_to_a_million_bytes_is_read_and_one_byte_more_is_refused() -> None:
    text = head_text({SUOZHEN: (5, HEAD_A)})
    padded = text + " " * (MAX_DOCUMENT_BYTES - len(text.encode()))
    assert len(padded.encode()) == MAX_DOCUMENT_BYTES == 1_000_000
    assert parse_head_document(padded, "head.json")[0].chain_seq == 5
    with pytest.raises(HeadFileError, match=r"^big\.json: larger than 1000000 bytes$"):
        parse_head_document(padded + " ", "big.json")


def test_what_is_not_a_published_head_is_refused_saying_where_and_why() -> None:
    good: dict[str, Any] = json.loads(head_text({SUOZHEN: (5, HEAD_A), QIFENG: (2, HEAD_B)}))
    seq = {"chain_seq": 5, "hash": HEAD_A.hex()}
    why: dict[str, list[Any]] = {
        "kind is not relief.ledger.head.v1": [
            {**good, "kind": "relief.ledger.head.v2"},
            {**good, "kind": "relief.ledger.head.v0"},
            {key: value for key, value in good.items() if key != "kind"},
        ],
        f"chains.{SUOZHEN} is not a 32-byte hash and a seq": [
            {**good, "chains": {SUOZHEN: {**seq, "hash": HEAD_A.hex()[:-2]}}},  # 31 bytes
            {**good, "chains": {SUOZHEN: {**seq, "hash": HEAD_A.hex() + "00"}}},  # 33 bytes
            {**good, "chains": {SUOZHEN: {**seq, "chain_seq": "5"}}},  # a 32-byte hash
        ],
        "not a published head": [
            {**good, "day": "1 July"},  # ValueError
            {key: value for key, value in good.items() if key != "day"},  # KeyError
            {**good, "chains": {SUOZHEN: HEAD_A.hex()}},  # TypeError
            {**good, "chains": [seq]},  # AttributeError
            [good],  # AttributeError
        ],
    }
    for reason, docs in why.items():
        for doc in docs:
            with pytest.raises(HeadFileError) as refused:
                parse_head_document(json.dumps(doc), "head.json")
            assert str(refused.value).startswith(f"head.json: {reason}"), doc
    with pytest.raises(HeadFileError, match=r"^x\.json: not a published head \("):
        parse_head_document("{not json", "x.json")  # ValueError


# ---------------------------------------------------------------- seals

SEAL_KEY = bytes(range(32))


def alert_payload_of(**change: Any) -> bytes:
    figures: dict[str, Any] = {
        "posting_id": uuid.UUID(int=7),
        "town": SUOZHEN,
        "kind": "advance_granted",
        "reason": "储备金不足",
        "account": f"town_reserve:{SUOZHEN}",
        "balance_fen": 400,
        "change_fen": -600,
        "occurred_at": FLOOD_AT,
    }
    return seals.alert_payload(**{**figures, **change})


def test_what_a_seal_covers_is_spelled_one_way_so_stored_seals_stay_valid() -> None:
    # golden values: a seal already stored is checked against these very bytes
    golden = (
        f'["00000000-0000-0000-0000-000000000007","{SUOZHEN}","advance_granted",'
        f'"储备金不足","town_reserve:{SUOZHEN}",400,-600,"2024-07-01T00:30:00.000000Z"]'
    )
    assert alert_payload_of() == golden.encode()
    assert alert_payload_of(occurred_at=FLOOD_AT.astimezone(CST)) == alert_payload_of()
    assert seals.position_payload("ledger.postings.v1", 3, 1_234) == (
        b'["ledger.postings.v1",3,1234]'
    )
    assert seals.entry_payload(HEAD_A) == HEAD_A


def test_an_alert_seal_covers_each_of_its_figures() -> None:
    sealed = alert_payload_of()
    changes: dict[str, Any] = {
        "posting_id": uuid.UUID(int=8),
        "town": QIFENG,
        "kind": "advance_voided",
        "reason": "other",
        "account": f"town_reserve:{QIFENG}",
        "balance_fen": 401,
        "change_fen": -601,
        "occurred_at": FLOOD_AT + timedelta(microseconds=1),
    }
    for field, value in changes.items():
        assert alert_payload_of(**{field: value}) != sealed, field


def test_a_seal_is_for_one_kind_of_row_under_one_key() -> None:
    sealer = Sealer(SEAL_KEY)
    entry_seal = seals.seal_entry(sealer, HEAD_A)
    position_seal = seals.seal_position(sealer, "ledger.postings.v1", 3, 1_234)
    assert sealer.valid(seals.ENTRY, HEAD_A, entry_seal)
    assert not sealer.valid(seals.ENTRY, HEAD_B, entry_seal)
    assert not sealer.valid(seals.POSITION, HEAD_A, entry_seal)
    assert sealer.valid(seals.POSITION, b'["ledger.postings.v1",3,1234]', position_seal)
    assert not sealer.valid(seals.POSITION, b'["ledger.postings.v1",3,1235]', position_seal)
    assert not sealer.valid(seals.ENTRY, b'["ledger.postings.v1",3,1234]', position_seal)
    assert not Sealer(bytes(32)).valid(seals.ENTRY, HEAD_A, entry_seal)


def test_verify_with_the_key_finds_an_entry_unsealed_or_sealed_by_another() -> None:
    sealer = Sealer(SEAL_KEY)
    entries = [
        dataclasses.replace(e, seal=seals.seal_entry(sealer, e.hash))
        for e in chain_of([funded(SUOZHEN), granted(SUOZHEN, 1, 100), funded(QIFENG)])
    ]
    v = Verifier(sealer)
    for e in entries:
        v.feed(e)
    report = v.report()
    assert report.ok and report.seals_checked and report.key_id == sealer.key_id
    assert report.entries_checked == 3
    plain = Verifier()
    for e in entries:
        plain.feed(e)
    assert (plain.report().seals_checked, plain.report().key_id) == (False, None)
    other = Sealer(bytes(32))
    for victim, seal, reason in (
        (entries[1], None, NOT_SEALED),
        (entries[1], seals.seal_entry(other, entries[1].hash), BAD_SEAL),
        (entries[1], sealer.seal(seals.POSITION, entries[1].hash), BAD_SEAL),
    ):
        forged = [e if e is not victim else dataclasses.replace(e, seal=seal) for e in entries]
        v = Verifier(sealer)
        for e in forged:
            v.feed(e)
        (problem,) = v.report().problems
        assert (problem.posting_id, problem.chain_seq, problem.reason) == (
            victim.posting_id,
            2,
            reason,
        )
