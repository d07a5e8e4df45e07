"""Least privilege in the deploy manifests: each container gets only the secrets it needs
(compose and Kubernetes). A secret handed to every container is one leak away from all of
them: the owner's URL can drop the ledger's triggers, the ID-hash key reverses household
refs, the chain key forges the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


# Public CA certificates, which any client of Kafka or PostgreSQL may hold
PUBLIC_SECRETS = {"relief-cluster-ca-cert", "relief-pg-ca"}


def k8s_workloads() -> list[dict[str, Any]]:
    """Every workload of the manifests that `kubectl apply -k deploy/k8s` applies."""
    folder = ROOT / "deploy/k8s"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((folder / name).read_text())
        if doc and doc["kind"] in ("Deployment", "StatefulSet", "Job")
    ]


def k8s_containers() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each container by what it runs -> (the container, its pod spec)."""
    out = {}
    for doc in k8s_workloads():
        pod = doc["spec"]["template"]["spec"]
        for c in pod["containers"]:
            out[_what(c["command"])] = (c, pod)
    return out


def container_secrets(container: dict[str, Any], pod: dict[str, Any]) -> set[str]:
    """The Secrets a container reads: whole (envFrom), one key (env), or mounted."""
    names = {r["secretRef"]["name"] for r in container.get("envFrom", []) if "secretRef" in r}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            names.add(ref["name"])
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")  # (not a claim template)
        if secret:
            names.add(secret["secretName"])
    return names - PUBLIC_SECRETS


def k8s_secrets() -> dict[str, set[str]]:
    return {what: container_secrets(c, pod) for what, (c, pod) in k8s_containers().items()}


def k8s_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


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


# Kubernetes: the URLs carry no password; each container gets its database role's password
# (PGPASSWORD) from that role's basic-auth Secret, which CloudNativePG also sets on the role.
K8S_SECRET = {
    "RELIEF_ID_HASH_KEY": "relief-id-hash-key",
    "RELIEF_LEDGER_CHAIN_KEY": "relief-ledger-chain-key",
    "RELIEF_CASEBOOK_SEAL_KEY": "relief-casebook-seal-key",
    "RELIEF_CASEBOOK_TOKEN": "relief-service-token",
}
ROLE_SECRET = {
    "relief_owner": "relief-db-owner",
    "relief_app": "relief-db-app",
    "relief_read": "relief-db-read",
}


def test_kubernetes_gives_each_secret_only_to_its_containers() -> None:
    containers = k8s_containers()
    secrets = k8s_secrets()
    for secret, name in K8S_SECRET.items():
        holders = {what for what, refs in secrets.items() if name in refs}
        assert holders == ALLOWED[secret], secret
    assert {what for what, refs in secrets.items() if "relief-intake-tokens" in refs} == {
        "intake serve"
    }
    # each database URL names one role, and the container holds that role's password only
    urls = ("RELIEF_DATABASE_URL", "RELIEF_DATABASE_OWNER_URL", "RELIEF_INTAKE_KEYS_DATABASE_URL")
    for what, (container, _) in containers.items():
        env = k8s_env(container)
        roles = {urlsplit(env[u]["value"]).username for u in urls if u in env}
        held = secrets[what] & set(ROLE_SECRET.values())
        assert held == {ROLE_SECRET[r] for r in roles if r}, what
        assert len(roles) <= 1, what
        for u in urls:
            if u in env:
                assert urlsplit(env[u]["value"]).password is None, (what, u)
                assert "sslmode=verify-full" in env[u]["value"], (what, u)
        if roles:
            password = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
            assert password == {"name": ROLE_SECRET[roles.pop()], "key": "password"}, what
    for secret in ("RELIEF_DATABASE_OWNER_URL", "RELIEF_INTAKE_KEYS_DATABASE_URL"):
        holders = {what for what, (c, _) in containers.items() if secret in k8s_env(c)}
        assert holders == ALLOWED[secret], secret
    for what, role in DATABASE.items():
        env = k8s_env(containers[what][0])
        if role is None:
            assert "RELIEF_DATABASE_URL" not in env, what
        else:
            user = urlsplit(env["RELIEF_DATABASE_URL"]["value"]).username
            assert user == f"relief_{role}", (what, user)
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
    containers = k8s_containers()
    secrets = k8s_secrets()
    assert set(secrets) == set(KAFKA)
    for what, principal in KAFKA.items():
        kafka = {name for name in secrets[what] if name.startswith("relief-kafka-")}
        assert kafka == (set() if principal is None else {f"relief-kafka-{principal}"}), what
        env = k8s_env(containers[what][0])
        if principal is None:
            assert "RELIEF_KAFKA_SASL_PASSWORD" not in env, what
            continue
        # the name Strimzi's KafkaUser has (its Secret: the prefix and the same name)
        assert env["RELIEF_KAFKA_SASL_USERNAME"]["value"] == principal, what
        password = env["RELIEF_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": f"relief-kafka-{principal}", "key": "password"}, what
