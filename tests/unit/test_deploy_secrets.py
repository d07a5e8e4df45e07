"""Least privilege in the deploy manifests: each container gets only the secrets it needs
(compose and Kubernetes). A secret handed to every container is one leak away from all of
them: the owner's URL can drop the ledger's triggers, the ID-hash key reverses household
refs, the chain key forges the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

# secret -> the only containers (by command) that may have it
ALLOWED = {
    "RELIEF_DATABASE_OWNER_URL": {"ledger migrate", "casebook migrate", "intake migrate"},
    "RELIEF_ID_HASH_KEY": {"intake serve"},
    "RELIEF_LEDGER_CHAIN_KEY": {"ledger run"},
    "RELIEF_CASEBOOK_SEAL_KEY": {"casebook run"},
    "RELIEF_CASEBOOK_TOKEN": {"intake serve", "ledger serve", "console serve"},
    "RELIEF_INTAKE_KEYS_DATABASE_URL": {"intake serve"},
}
# which database role each container's RELIEF_DATABASE_URL must be (None: no database)
DATABASE = {
    "ledger run": "app",
    "casebook run": "app",
    "ledger serve": "read",
    "casebook serve": "read",
    "emergency worker": None,
    "emergency claims": None,
    "emergency clock": None,
    "console serve": None,
}
# each container that talks to Kafka, as which principal (its ACLs); None: no Kafka login
KAFKA = {
    "emergency worker": "emergency",
    "emergency claims": "emergency",  # the claims stage: the processor's principal
    "emergency clock": "clock",
    "ledger run": "ledger",
    "ledger serve": "dashboard",
    "casebook run": "casebook",
    "casebook serve": "casebook",
    "intake serve": "intake",
    "console serve": None,
    "ledger migrate": None,
    "casebook migrate": None,
    "intake migrate": None,
}


def _what(command: list[str]) -> str:
    return f"{command[2].removeprefix('services.')} {command[3]}"


def compose_env() -> dict[str, dict[str, str]]:
    doc = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())
    return {_what(s["command"]): s.get("environment", {}) for s in doc["services"].values()}


def k8s_secrets() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for doc in yaml.safe_load_all((ROOT / "deploy/k8s/relief.yaml").read_text()):
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            refs: list[dict[str, Any]] = c.get("envFrom", [])
            out[_what(c["command"])] = {r["secretRef"]["name"] for r in refs if "secretRef" in r}
    return out


def test_compose_gives_each_secret_only_to_its_containers() -> None:
    env = compose_env()
    assert set(env) >= set(DATABASE) | {"intake serve", "ledger migrate", "casebook migrate"}
    for secret, allowed in ALLOWED.items():
        holders = {what for what, e in env.items() if secret in e}
        assert holders == allowed, secret
    for what, role in DATABASE.items():
        url = env[what].get("RELIEF_DATABASE_URL")
        if role is None:
            assert url is None, what
        else:
            assert url is not None and ("READ_URL" in url) == (role == "read"), (what, url)
    assert all(e.get("RELIEF_ENV") == "production" for e in env.values())


def test_kubernetes_gives_each_secret_only_to_its_containers() -> None:
    secrets = k8s_secrets()
    by_secret = {
        "RELIEF_DATABASE_OWNER_URL": "relief-db-owner",
        "RELIEF_ID_HASH_KEY": "relief-id-hash-key",
        "RELIEF_LEDGER_CHAIN_KEY": "relief-ledger-chain-key",
        "RELIEF_CASEBOOK_SEAL_KEY": "relief-casebook-seal-key",
        "RELIEF_CASEBOOK_TOKEN": "relief-service-token",
        "RELIEF_INTAKE_KEYS_DATABASE_URL": "relief-intake-keys-db",
    }
    for secret, name in by_secret.items():
        holders = {what for what, refs in secrets.items() if name in refs}
        assert holders == ALLOWED[secret], secret
    for what, role in DATABASE.items():
        expected = set() if role is None else {f"relief-db-{role}"}
        assert secrets[what] & {"relief-db-app", "relief-db-read", "relief-db-owner"} == expected
    assert all("relief-secrets" not in refs for refs in secrets.values())


def test_compose_gives_each_service_its_own_kafka_principal() -> None:
    env = compose_env()
    assert set(env) == set(KAFKA)
    for what, principal in KAFKA.items():
        e = env[what]
        assert e.get("RELIEF_KAFKA_SECURITY_PROTOCOL", "").startswith("${"), what
        if principal is None:
            assert "RELIEF_KAFKA_SASL_PASSWORD" not in e, what
            continue
        assert e["RELIEF_KAFKA_SASL_USERNAME"] == principal, what
        assert f"RELIEF_KAFKA_PASSWORD_{principal.upper()}" in e["RELIEF_KAFKA_SASL_PASSWORD"]


def test_kubernetes_gives_each_service_its_own_kafka_principal() -> None:
    secrets = k8s_secrets()
    assert set(secrets) == set(KAFKA)
    for what, principal in KAFKA.items():
        kafka = {name for name in secrets[what] if name.startswith("relief-kafka-")}
        assert kafka == (set() if principal is None else {f"relief-kafka-{principal}"}), what
