"""The emergency-aid rules as pure functions over a town's `Book`: `decide(book, record,
rules) -> Verdict` and `evolve(book, event, rules)`, the state as the fold of what was
decided. No I/O, no wall clock (docs/design.md "rules are pure").

Where each rule lives (the full map is in `decide.py`):
- relief first within 24 hours (R5), the 5-day paperwork (P1): `advance.py`, `deadlines.py`,
  `ticks.py`
- the 50,000-yuan town reserve (R4, P11): `reserve.py`, `advance.py`, `review.py`
- expenditure caps, approval and deliberation (R3, R6, P2, P9): `caps.py`, `approval.py`
- transitional living relief (P5): `transitional.py`
- what is stored, and how large each value can be: `state.py`, `book.py`
"""
