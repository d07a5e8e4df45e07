"""The tokens file (`RELIEF_INTAKE_TOKENS_FILE`, TOML or JSON: only tokens' hashes), re-read
when it changes, so `relief token add` needs no restart."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from services.intake.domain.tokens import TokenConfigError, TokenTable, parse_tokens

log = logging.getLogger("relief.intake.api")

# How often the file is checked for changes.
TOKENS_RECHECK_S = 2.0


class TokenSource:
    """The tokens file, re-read when it changes; a missing file means no tokens (all 401)."""

    def __init__(self, path: Path | None, fixed: TokenTable | None = None) -> None:
        self.path = path
        self._table = fixed or TokenTable({})
        self._fixed = fixed is not None
        self._mtime_ns: int | None = None
        self._checked_s = 0.0
        if not self._fixed:
            self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        if self.path is None:
            if force:
                log.warning("RELIEF_INTAKE_TOKENS_FILE is not set: every request will be 401")
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            if force:
                log.warning("tokens file %s not found: every request will be 401", self.path)
            self._table, self._mtime_ns = TokenTable({}), None
            return
        if mtime == self._mtime_ns and not force:
            return
        fmt = "json" if self.path.suffix.lower() == ".json" else "toml"
        try:
            table = TokenTable(parse_tokens(self.path.read_text("utf-8"), fmt))
        except (TokenConfigError, OSError, UnicodeDecodeError) as exc:
            # keep the tokens we had: a half-written file must not lock everyone out
            log.error("tokens file %s not loaded: %s", self.path, exc)
            return
        self._table, self._mtime_ns = table, mtime
        log.info("tokens file %s: %d tokens", self.path, len(table))

    def table(self) -> TokenTable:
        if not self._fixed:
            now = time.monotonic()
            if now - self._checked_s >= TOKENS_RECHECK_S:
                self._checked_s = now
                self._reload()
        return self._table
