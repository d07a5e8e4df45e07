"""The live finance dashboard of the ledger: an aiohttp app over the ledger's read side."""
