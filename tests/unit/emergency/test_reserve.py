"""The town reserve (R4, P11): never below zero, never above its size, money conserved."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.emergency.domain.reserve import Reserve, ReserveInvariantBroken

SIZE = 5_000_000  # 50,000 yuan


def test_a_new_reserve_is_full() -> None:
    r = Reserve.opened(SIZE)
    assert (r.available_fen, r.held_fen, r.paid_fen, r.shortfall_fen) == (SIZE, 0, 0, 0)


def test_hold_pay_replenish_story() -> None:
    r = Reserve.opened(SIZE).hold(100_000)  # a family's 1,000-yuan advance
    assert (r.available_fen, r.held_fen) == (4_900_000, 100_000)
    r = r.pay(held_fen=100_000, paid_fen=80_000)  # paid 800; the rest goes back
    assert (r.available_fen, r.held_fen, r.paid_fen) == (4_920_000, 0, 80_000)
    assert r.shortfall_fen == 80_000
    r = r.replenish(80_000)  # county settlement tops it back up (P11)
    assert r.available_fen == SIZE and r.shortfall_fen == 0


def test_a_hold_that_does_not_fit_is_a_bug_not_a_silent_change() -> None:
    r = Reserve.opened(SIZE)
    with pytest.raises(ReserveInvariantBroken):
        r.hold(SIZE + 1)
    assert r.available_fen == SIZE
    with pytest.raises(ReserveInvariantBroken):
        r.hold(0)


def test_only_a_positive_amount_up_to_what_is_available_is_covered() -> None:
    # R4 / design rule 2: a grant is covered whole by the available part, or not at all;
    # nothing (0 fen) and a negative amount are no grant, whatever is available
    r = Reserve.opened(SIZE).hold(1_000)
    assert r.covers(1) and r.covers(SIZE - 1_000)
    assert not r.covers(SIZE - 999)
    assert not r.covers(0)
    assert not r.covers(-1)


@pytest.mark.parametrize("paid", [0, -1, 1_001])
def test_a_payment_of_nothing_or_more_than_the_hold_is_a_bug_that_says_so(paid: int) -> None:
    # a payment settles its hold with 1 fen up to the hold, never more and never nothing
    r = Reserve.opened(SIZE).hold(1_000)
    with pytest.raises(ReserveInvariantBroken, match=f"payment {paid} fen outside hold 1000 fen"):
        r.pay(held_fen=1_000, paid_fen=paid)
    assert r.pay(held_fen=1_000, paid_fen=1_000).paid_fen == 1_000


def test_replenishing_above_the_size_is_refused() -> None:
    r = Reserve.opened(SIZE).hold(1_000)
    with pytest.raises(ReserveInvariantBroken):
        r.replenish(1)  # a hold is not a shortfall: nothing is spent yet
    with pytest.raises(ReserveInvariantBroken):
        Reserve(size_fen=SIZE, available_fen=SIZE + 1).checked()


ops = st.lists(
    st.tuples(st.sampled_from(["hold", "release", "pay", "replenish"]), st.integers(1, SIZE)),
    max_size=60,
)


@given(ops)
def test_any_sequence_of_valid_moves_keeps_every_invariant(moves: list[tuple[str, int]]) -> None:
    r = Reserve.opened(SIZE)
    holds: list[int] = []
    for op, amount in moves:
        if op == "hold" and r.covers(amount):
            r = r.hold(amount)
            holds.append(amount)
        elif op == "release" and holds:
            r = r.release(holds.pop())
        elif op == "pay" and holds:
            held = holds.pop()
            r = r.pay(held_fen=held, paid_fen=max(1, min(held, amount)))
        elif op == "replenish" and r.shortfall_fen > 0:
            r = r.replenish(min(amount, r.shortfall_fen))
        assert 0 <= r.available_fen <= SIZE
        assert r.available_fen + r.held_fen <= SIZE
        assert r.available_fen + r.held_fen + r.paid_fen == SIZE + r.replenished_fen
        assert r.held_fen == sum(holds)


@pytest.mark.parametrize(
    ("figures", "named"),
    [
        # R4: never below zero - even when every other sum still adds up
        ({"available_fen": -1, "paid_fen": 101}, "available -1 outside 0..100"),
        # R4: never above its size
        ({"available_fen": 101, "replenished_fen": 1}, "available 101 outside 0..100"),
        ({"available_fen": 100, "held_fen": -1, "paid_fen": 1}, "held_fen -1 < 0"),
        ({"available_fen": 99, "held_fen": 2, "paid_fen": -1}, "paid_fen -1 < 0"),
        ({"available_fen": 99, "replenished_fen": -1}, "replenished_fen -1 < 0"),
        # P10: money is conserved - 50 fen gone without a posting is a bug, not a balance
        ({"available_fen": 50}, "available + held + paid != size + replenished"),
        ({"available_fen": 100, "paid_fen": 1}, "available + held + paid != size + replenished"),
        # R4 + P11: a hold counts against the size; replenishment never lifts it above
        (
            {"available_fen": 100, "held_fen": 1, "replenished_fen": 1},
            "available + held above the reserve's size",
        ),
    ],
)
def test_each_broken_invariant_alone_is_a_bug_that_names_itself(
    figures: dict[str, int], named: str
) -> None:
    with pytest.raises(ReserveInvariantBroken, match=re.escape(named)):
        Reserve(size_fen=100, **figures).checked()
    assert Reserve(size_fen=100, available_fen=100).checked().available_fen == 100


@pytest.mark.parametrize("amount", [0, -1])
def test_a_release_or_replenishment_of_nothing_or_less_is_a_bug(amount: int) -> None:
    # a negative release would quietly move available money into "held" with every sum
    # still balanced (R4): only a positive amount moves money
    r = Reserve.opened(SIZE).hold(1_000).pay(held_fen=1_000, paid_fen=500).hold(1_000)
    for move in (r.release, r.replenish):
        with pytest.raises(ReserveInvariantBroken, match=f"amount must be positive, got {amount}"):
            move(amount)
    with pytest.raises(ReserveInvariantBroken, match=f"amount must be positive, got {amount}"):
        r.pay(held_fen=amount, paid_fen=amount)
