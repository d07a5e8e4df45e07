"""A town's counters follow its cases by arithmetic: every counter, both ways."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.emergency.domain.state import Counts

FIELDS = list(Counts.model_fields)
counts = st.builds(Counts, **{name: st.integers(0, 10_000) for name in FIELDS})


@given(counts, counts)
def test_plus_and_minus_move_every_counter(a: Counts, b: Counts) -> None:
    added, taken = a.plus(b), a.plus(b, -1)
    for name in FIELDS:  # a counter added to Counts and forgotten in `plus` fails here
        assert getattr(added, name) == getattr(a, name) + getattr(b, name), name
        assert getattr(taken, name) == getattr(a, name) - getattr(b, name), name
    assert added.plus(b, -1) == a
