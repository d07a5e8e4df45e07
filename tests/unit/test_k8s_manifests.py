"""The Kubernetes manifests (deploy/k8s), validated offline, before any cluster sees them.

Core kinds are checked against the Kubernetes API's own schemas (the `kubernetes-validate`
package, strict: an unknown field is an error, as `kubectl apply --validate=strict`); the
operators' kinds (Strimzi's Kafka, KafkaNodePool, KafkaTopic, KafkaUser; CloudNativePG's
Cluster) against the openAPIV3Schema of the CRDs the operators publish, checked into
deploy/k8s/crds/, made strict the same way. Then what the service needs of them: the topics
and their configs as the local stack makes them, each principal's ACLs as `up --secure`
grants them, the three database roles, a processor worker per group of partitions, probes
on the ports that exist, limits, and the county's files mounted where they are read.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.local import stack
from relief_platform.topics import TOPIC_CONFIGS
from schemas import topics
from services.emergency.settings import EmergencySettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
CRDS = K8S / "crds"
# the oldest Kubernetes the manifests are meant for (the operators' floor) and the newest
# the validator knows
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
WORKLOADS = ("Deployment", "StatefulSet", "Job")
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 900 KB of YAML
STATE_TABLE = "state"  # services/emergency/adapters/faust_app.py STATE_TABLE
CLAIMS_TABLE = "claims"  # services/emergency/adapters/claims_app.py CLAIMS_TABLE


@cache
def manifests() -> list[dict[str, Any]]:
    """Every document `kubectl apply -k deploy/k8s` applies, in order (not to be changed:
    a test that breaks one breaks a copy)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
        if doc
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def containers() -> dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Each workload container by name -> (the container, its pod spec, its workload)."""
    out = {}
    for doc in manifests():
        if doc["kind"] in WORKLOADS:
            pod = doc["spec"]["template"]["spec"]
            for c in pod["containers"]:
                out[f"{doc['metadata']['name']}/{c['name']}"] = (c, pod, doc)
    return out


# ------------------------------------------------------------------ schemas


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as the API server applies it with strict field validation:
    an object that lists its properties takes no other field (unless it says it keeps
    unknown fields). Published CRDs leave `additionalProperties` out: the server prunes."""
    node = dict(schema)
    if "properties" in node:
        node["properties"] = {k: strict(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = strict(node[key])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            node[key] = [strict(s) for s in node[key]]
    return node


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict schema of every served version of every CRD."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=FAST_LOADER)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = version["schema"]["openAPIV3Schema"]
                out[(f"{group}/{version['name']}", kind)] = strict(schema)
    return out


def custom_errors(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` breaks its CRD's schema, each with where (empty: none)."""
    schema = crd_schemas().get((doc["apiVersion"], doc["kind"]))
    if schema is None:
        return [f"no CRD in deploy/k8s/crds serves {doc['apiVersion']} {doc['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def is_core(doc: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def named(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_kinds_match_the_kubernetes_api(version: str) -> None:
    core = [doc for doc in manifests() if is_core(doc)]
    assert {doc["kind"] for doc in core} >= {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "StatefulSet",
        "Job",
        "Service",
        "PodDisruptionBudget",
    }
    for doc in core:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{named(doc)} on Kubernetes {version}: {exc.message}")


def test_operator_kinds_match_their_published_crds() -> None:
    custom = [doc for doc in manifests() if not is_core(doc)]
    assert {doc["kind"] for doc in custom} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "Cluster",
    }
    for doc in custom:
        assert custom_errors(doc) == [], named(doc)


def test_every_file_is_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_a_misspelled_field_or_a_wrong_type_is_refused() -> None:
    """The checks above would catch the mistakes people make (shown on a copy of each)."""
    (topic,) = [t for t in of_kind("KafkaTopic") if t["spec"]["topicName"] == topics.INTAKE]
    typo = copy.deepcopy(topic)
    typo["spec"]["partitons"] = typo["spec"].pop("partitions")
    assert any("partitons" in e for e in custom_errors(typo))
    wrong = copy.deepcopy(topic)
    wrong["spec"]["replicas"] = "three"
    assert any(e.startswith("spec.replicas:") for e in custom_errors(wrong))

    (cluster,) = of_kind("Cluster")
    typo = copy.deepcopy(cluster)
    typo["spec"]["managed"]["roles"][0]["passwordSecrett"] = {"name": "relief-db-app"}
    assert any("passwordSecrett" in e for e in custom_errors(typo))
    wrong = copy.deepcopy(cluster)
    wrong["spec"]["instances"] = "3"
    assert any(e.startswith("spec.instances:") for e in custom_errors(wrong))

    (user,) = [u for u in of_kind("KafkaUser") if u["metadata"]["name"] == "ledger"]
    wrong = copy.deepcopy(user)
    wrong["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    assert custom_errors(wrong) != []

    (worker,) = [s for s in of_kind("StatefulSet") if s["metadata"]["name"] == "relief-emergency"]
    typo = copy.deepcopy(worker)
    typo["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    wrong = copy.deepcopy(worker)
    wrong["spec"]["replicas"] = "3"
    for broken in (typo, wrong):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


# ------------------------------------------------------------------ Kafka


def config_values(config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()}


def test_kafka_is_three_kraft_nodes_that_lose_nothing_acknowledged() -> None:
    (kafka,) = of_kind("Kafka")
    (pool,) = of_kind("KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = config_values(kafka["spec"]["kafka"]["config"])
    assert config["default.replication.factor"] == "3"
    assert config["min.insync.replicas"] == "2"
    assert config["unclean.leader.election.enable"] == "false"
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["entityOperator"]["userOperator"]["secretPrefix"] == "relief-kafka-"
    env = of_kind("ConfigMap")[0]["data"]
    assert env["RELIEF_KAFKA_BOOTSTRAP"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9093"
    assert env["RELIEF_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["RELIEF_KAFKA_SASL_MECHANISM"] == stack.KAFKA_SASL_MECHANISM


def test_every_topic_with_the_configs_the_service_requires() -> None:
    (kafka,) = of_kind("Kafka")
    declared = {t["spec"]["topicName"]: t for t in of_kind("KafkaTopic")}
    changelog = f"{EmergencySettings().emergency_app_id}-{STATE_TABLE}-changelog"
    claims_changelog = f"{EmergencySettings().claims_app_id}-{CLAIMS_TABLE}-changelog"
    assert set(declared) == {*topics.ALL_TOPICS, changelog, claims_changelog}
    partitions = int(of_kind("ConfigMap")[0]["data"]["RELIEF_PARTITIONS"])
    assert partitions == topics.DEFAULT_PARTITIONS
    for name, topic in declared.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", topic["metadata"]["name"])
        one = name in topics.FIXED_PARTITIONS or name == claims_changelog  # (the claims stage)
        assert topic["spec"]["partitions"] == (1 if one else partitions), name
        assert topic["spec"]["replicas"] == 3, name
        config = config_values(topic["spec"]["config"])
        # as the local cluster makes them (deploy/local/stack.py up): replication 3, ISR 2
        wanted = {**TOPIC_CONFIGS.get(name, {}), "min.insync.replicas": "2"}
        if name in (changelog, claims_changelog):
            wanted["cleanup.policy"] = "compact"  # the worker refuses one that is not
        assert config == wanted, name


def test_each_principal_has_the_acls_of_the_secure_local_stack() -> None:
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    wanted = stack.kafka_acls()
    assert set(users) == set(wanted)
    kinds = {2: "topic", 3: "group", 4: "cluster"}
    operations = {
        2: "All",
        3: "Read",
        4: "Write",
        5: "Create",
        8: "Describe",
        10: "DescribeConfigs",
    }
    for name, user in users.items():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        have = set()
        for acl in user["spec"]["authorization"]["acls"]:
            assert acl.get("type", "allow") == "allow"
            resource = acl["resource"]
            pattern = resource.get("patternType", "literal")
            for op in acl["operations"]:
                have.add((resource["type"], resource.get("name", ""), pattern, op))
        expected = {
            (
                kinds[kind],
                "" if kind == 4 else res,
                "prefix" if pat == 4 else "literal",
                operations[op],
            )
            for rule in wanted[name]
            for kind, res, pat, op in stack.acl_entries(rule)
        }
        assert have == expected, name


# ------------------------------------------------------------------ PostgreSQL


def test_postgres_is_three_instances_with_the_three_roles() -> None:
    (cluster,) = of_kind("Cluster")
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["postgresql"]["synchronous"]["number"] >= 1
    initdb = spec["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == (stack.DB_NAME, stack.OWNER_ROLE)
    assert initdb["secret"]["name"] == "relief-db-owner"
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert set(roles) == {stack.APP_ROLE, stack.READ_ROLE}
    for name, role in roles.items():
        assert role["login"] is True and role["ensure"] == "present"
        assert not any(role.get(k) for k in ("superuser", "createdb", "createrole", "bypassrls"))
        assert role["passwordSecret"]["name"] == f"relief-db-{name.removeprefix('relief_')}"
    assert spec["enableSuperuserAccess"] is False
    # services reach the primary through the operator's read-write Service
    rw = f"{cluster['metadata']['name']}-rw"
    for name, (c, _, _) in containers().items():
        for e in c.get("env", []):
            if e["name"].endswith("_URL") and str(e.get("value", "")).startswith("postgresql"):
                assert f"@{rw}:5432/{stack.DB_NAME}?" in e["value"], name


# ------------------------------------------------------------------ workloads


def test_the_processor_runs_one_worker_per_group_of_partitions() -> None:
    (worker,) = [s for s in of_kind("StatefulSet") if s["metadata"]["name"] == "relief-emergency"]
    partitions = int(of_kind("ConfigMap")[0]["data"]["RELIEF_PARTITIONS"])
    replicas = worker["spec"]["replicas"]
    assert 1 < replicas <= partitions and partitions % replicas == 0
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    (c,) = worker["spec"]["template"]["spec"]["containers"]
    data_dir = {e["name"]: e.get("value") for e in c["env"]}["RELIEF_EMERGENCY_DATA_DIR"]
    assert {"name": claim["metadata"]["name"], "mountPath": data_dir} in c["volumeMounts"]
    assert of_kind("ConfigMap")[0]["data"]["RELIEF_EMERGENCY_CHANGELOG_REPLICATION"] == "3"


def test_every_container_has_limits_probes_on_its_ports_and_no_privileges() -> None:
    for name, (c, pod, workload) in containers().items():
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, kind)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        if workload["kind"] == "Job":
            continue
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if not ports:
            assert name == "relief-clock/clock", f"{name} has no port to probe"
            continue
        assert "livenessProbe" in c, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in c:
                check = c[probe].get("httpGet") or c[probe]["tcpSocket"]
                assert check["port"] in ports, (name, probe)


def test_every_service_that_reads_the_county_files_mounts_them() -> None:
    env = of_kind("ConfigMap")[0]["data"]
    county = str(Path(env["RELIEF_POLICY_FILE"]).parent)
    assert str(Path(env["RELIEF_WORKDAYS_FILE"]).parent) == county
    readers = {"services.emergency worker", "services.intake serve", "services.casebook run"}
    readers |= {"services.emergency claims"}
    readers |= {"services.casebook serve", "services.ledger serve", "services.console serve"}
    for name, (c, pod, _) in containers().items():
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if f"{c['command'][2]} {c['command'][3]}" in readers:
            assert volumes[mounts[county]]["configMap"]["name"] == "relief-county", name
        kafka = any(e["name"] == "RELIEF_KAFKA_SASL_PASSWORD" for e in c.get("env", []))
        if kafka:  # the CA that Kafka's certificates are checked against
            ca = str(Path(env["RELIEF_KAFKA_SSL_CAFILE"]).parent)
            assert volumes[mounts[ca]]["secret"]["secretName"] == "relief-cluster-ca-cert", name


def test_compose_mounts_the_files_each_service_reads() -> None:
    doc = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())
    for name, service in doc["services"].items():
        env = service["environment"]
        mounts = {v.split(":")[-2] for v in service.get("volumes", []) if ":" in v}
        reads = {"RELIEF_POLICY_FILE", "RELIEF_WORKDAYS_FILE", "RELIEF_INTAKE_TOKENS_FILE"}
        what = service["command"][2:4]
        if what[1] in ("migrate",) or what == ["services.emergency", "clock"]:
            continue
        if what == ["services.ledger", "run"]:
            continue  # the ledger writer reads no file
        for key in reads & set(env):
            path = env[key]
            assert any(path.startswith(m) for m in mounts), (name, key, path)
    emergency = doc["services"]["emergency"]
    data_dir = emergency["environment"]["RELIEF_EMERGENCY_DATA_DIR"]
    assert data_dir in emergency["volumes"], "each worker keeps its tables on a volume"
