"""A town's relief reserve (policy R4, P11) as pure arithmetic.

The reserve is an imprest of a fixed size (50,000 yuan by default, R4). Advances are
*holds* on it (docs/design.md rule 1): a hold moves money from `available` to `held`; the
town's confirmed payment moves it from `held` to `paid`; a cancellation moves it back to
`available`. County settlement tops the reserve back up (P11), never above its size.

Invariants, checked on every change (a broken one is a bug, not a business outcome):
    0 <= available_fen <= size_fen
    held_fen >= 0, paid_fen >= 0, replenished_fen >= 0
    available_fen + held_fen + paid_fen == size_fen + replenished_fen     (money is conserved)
    available_fen + held_fen <= size_fen                                  (never above its size)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ReserveInvariantBroken(RuntimeError):
    """A reserve figure went where the rules say it never can: a bug, never swallowed."""


class Reserve(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    size_fen: int
    available_fen: int
    held_fen: int = 0
    paid_fen: int = 0
    replenished_fen: int = 0

    @classmethod
    def opened(cls, size_fen: int) -> Reserve:
        return cls(size_fen=size_fen, available_fen=size_fen).checked()

    # ---------------------------------------------------------------- questions

    def covers(self, amount_fen: int) -> bool:
        """R4 / docs/design.md rule 2: a grant fits only if the available part covers it whole."""
        return 0 < amount_fen <= self.available_fen

    @property
    def shortfall_fen(self) -> int:
        """How much settlement may put back before the reserve is full again (P11)."""
        return self.size_fen - self.available_fen - self.held_fen

    def is_low(self, threshold_fen: int) -> bool:
        return self.available_fen < threshold_fen

    # ---------------------------------------------------------------- changes

    def hold(self, amount_fen: int) -> Reserve:
        if not self.covers(amount_fen):
            raise ReserveInvariantBroken(
                f"hold of {amount_fen} fen does not fit available {self.available_fen} fen"
            )
        return self._with(
            available_fen=self.available_fen - amount_fen, held_fen=self.held_fen + amount_fen
        )

    def release(self, amount_fen: int) -> Reserve:
        """A cancelled advance: the hold goes back to available."""
        self._positive(amount_fen)
        return self._with(
            available_fen=self.available_fen + amount_fen, held_fen=self.held_fen - amount_fen
        )

    def pay(self, held_fen: int, paid_fen: int) -> Reserve:
        """A confirmed payment settles a hold of `held_fen`; any unpaid rest is released."""
        self._positive(held_fen)
        if not 0 < paid_fen <= held_fen:
            raise ReserveInvariantBroken(f"payment {paid_fen} fen outside hold {held_fen} fen")
        return self._with(
            available_fen=self.available_fen + (held_fen - paid_fen),
            held_fen=self.held_fen - held_fen,
            paid_fen=self.paid_fen + paid_fen,
        )

    def replenish(self, amount_fen: int) -> Reserve:
        self._positive(amount_fen)
        if amount_fen > self.shortfall_fen:
            raise ReserveInvariantBroken(
                f"replenishment {amount_fen} fen exceeds shortfall {self.shortfall_fen} fen"
            )
        return self._with(
            available_fen=self.available_fen + amount_fen,
            replenished_fen=self.replenished_fen + amount_fen,
        )

    # ---------------------------------------------------------------- internals

    def _with(self, **changes: int) -> Reserve:
        return self.model_copy(update=changes).checked()

    @staticmethod
    def _positive(amount_fen: int) -> None:
        if amount_fen <= 0:
            raise ReserveInvariantBroken(f"amount must be positive, got {amount_fen} fen")

    def checked(self) -> Reserve:
        problems = []
        if not 0 <= self.available_fen <= self.size_fen:
            problems.append(f"available {self.available_fen} outside 0..{self.size_fen}")
        for name in ("held_fen", "paid_fen", "replenished_fen"):
            if getattr(self, name) < 0:
                problems.append(f"{name} {getattr(self, name)} < 0")
        if (
            self.available_fen + self.held_fen + self.paid_fen
            != self.size_fen + self.replenished_fen
        ):
            problems.append("available + held + paid != size + replenished")
        if self.available_fen + self.held_fen > self.size_fen:
            problems.append("available + held above the reserve's size")
        if problems:
            raise ReserveInvariantBroken("; ".join(problems) + f" in {self!r}")
        return self
