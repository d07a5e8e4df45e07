"""Versioned SQL migrations of the casebook's own schema, applied in order by
`python -m services.casebook migrate`.
"""
