"""Composition root of the emergency processor: settings, policy, towns, Faust app."""

from __future__ import annotations

from schemas.policy import load_policy
from schemas.towns import load_county
from services.emergency.adapters.faust_app import build_app
from services.emergency.domain.decide import Rules
from services.emergency.settings import EmergencySettings


def rules_from(settings: EmergencySettings) -> Rules:
    return Rules(policy=load_policy(settings.policy_file), county=load_county(settings.policy_file))


def create_claims_app(settings: EmergencySettings | None = None):  # type: ignore[no-untyped-def]
    """The county's claims stage (P6 across towns: docs/design.md "one household, many
    towns")."""
    from services.emergency.adapters.claims_app import build_claims_app

    settings = settings or EmergencySettings()
    return build_claims_app(settings, rules_from(settings))


def create_app(settings: EmergencySettings | None = None):  # type: ignore[no-untyped-def]
    settings = settings or EmergencySettings()
    return build_app(settings, rules_from(settings), partitions=settings.partitions)
