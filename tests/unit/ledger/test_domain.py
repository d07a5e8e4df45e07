"""The ledger's pure core: canonical encoding, hash chains, the reserve guard, verification
and reconciliation — no servers."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relief_platform.secrets import Sealer
from schemas.envelope import CST
from schemas.postings import Posting
from services.ledger.domain import seals
from services.ledger.domain.accounts import AccountError, normal_balance, parse_account
from services.ledger.domain.entries import (
    GENESIS_HASH,
    Entry,
    PostingError,
    canonical_bytes,
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
from services.ledger.domain.plan import ChainHead, plan_batch
from services.ledger.domain.reconcile import ReserveDifference, reconcile
from services.ledger.domain.verify import BAD_SEAL, NOT_SEALED, DayFigure, Verifier
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


# ---------------------------------------------------------------- canonical encoding, hashes


def test_canonical_encoding_is_fixed_so_replays_give_the_same_hash() -> None:
    entry = make_entry(incoming(funded(SUOZHEN)), 1, GENESIS_HASH)
    # the same instant in another zone encodes the same way
    cst = timezone(timedelta(hours=8))
    same = dataclasses.replace(entry, occurred_at=entry.occurred_at.astimezone(cst))
    assert entry_hash(same) == entry.hash
    body = canonical_bytes(
        posting_id=entry.posting_id,
        chain=entry.chain,
        chain_seq=1,
        kind=entry.kind,
        town=entry.town,
        correlation_id=entry.correlation_id,
        causation_id=entry.causation_id,
        occurred_at=entry.occurred_at,
        memo=entry.memo,
        lines=entry.lines,
    )
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


def test_verify_names_the_entry_after_a_deleted_one() -> None:
    entries = chain_of(flood(30))
    gone = entries.pop(4)
    after = next(e for e in entries if e.chain == gone.chain and e.chain_seq == gone.chain_seq + 1)
    (problem,) = verify(entries)
    assert str(after.posting_id) in problem and "missing" in problem


def test_verify_reports_a_read_side_balance_that_disagrees() -> None:
    entries = chain_of([funded(SUOZHEN)])
    v = Verifier()
    v.feed(entries[0])
    report = v.report(
        {f"town_reserve:{SUOZHEN}": RESERVE_FEN + 1, "county_fund:county": RESERVE_FEN}
    )
    assert not report.ok and "read side" in report.problems[0].reason


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
        "kind is not relief.ledger.head.v1": [{**good, "kind": "relief.ledger.head.v2"}],
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
