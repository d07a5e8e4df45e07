"""Versioned SQL migrations of the ledger, applied in order by
`python -m services.ledger migrate`.
"""
