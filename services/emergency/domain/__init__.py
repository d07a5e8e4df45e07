"""The emergency-aid rules as pure functions: `decide(state, record) -> outputs`,
`evolve(state, output) -> state`. No I/O, no wall clock (DESIGN "rules are pure").

Where each rule lives:
- 24-hour advance relief (R5) and the 5-day paperwork (P1): `deadlines.py`, `decide.py`
- the 50,000-yuan town reserve (R4, P11): `reserve.py`
- expenditure caps and deliberation (R3, R6): `caps.py`
"""
