"""The shared record catalogue of the relief service (docs/contracts.md).

Only records and the small pure helpers they need live here: money in integer fen,
resident-ID validation and keyed hashing, the county's towns, the dated policy figures,
the envelope, the records of each topic and the registry that encodes and decodes them.
Nothing here performs I/O except the configuration loaders and `python -m schemas.export`.
"""
