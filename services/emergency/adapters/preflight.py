"""Fail fast on a wrong world: check the Kafka topics the processor relies on before it starts.

A worker started against the wrong world does not crash; it decides wrongly. An intake
topic with another partition count than `RELIEF_PARTITIONS` puts towns on partitions the
clock's ticks do not concern; `CreateTime` stamps let a producer's clock move deadlines
(docs/design.md "one clock for every deadline: the broker's"); a changelog that is not compacted
loses town state once retention passes. So the worker asks the cluster first and refuses
to start with one line per problem, each saying what is wrong and what to do.

`check_world` returns those lines (empty: the world is right); `require_world` raises
`PreflightFailed` with all of them, and `PreflightFailed.exit()` prints them and ends the
process with `EX_CONFIG` (78), so a supervisor can tell "fix the configuration" from a
crash (the worker's `EXIT_BUG`, 70). A Kafka that cannot be reached, or does not answer,
is no configuration to fix but a world that is away for now (a broker restarting, the
network cut, the worker started before the brokers): that is `KafkaUnavailable`, which
ends the process with `EX_UNAVAILABLE` (69), as the worker does when Kafka stops
acknowledging, and a supervisor starts it again.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code

from relief_platform import kafka_security

EX_CONFIG = 78  # sysexits.h: a configuration error; restarting will not help
EX_UNAVAILABLE = 69  # sysexits.h: a service is unavailable; try again later

PREFLIGHT_TIMEOUT_S = 15.0  # the whole check, bootstrap included
# A topic created a moment ago may be missing from a broker's metadata, or report
# LEADER_NOT_AVAILABLE, until the cluster has caught up: ask again for about 2 s before
# calling it a problem (a topic that is really missing costs that much more to report).
# At most half of the check's timeout goes to this, so the rest can describe the configs.
METADATA_SETTLE_S = 2.0
METADATA_RETRY_S = 0.2

CHANGELOG_SUFFIX = "-changelog"  # Faust names a table's changelog "<app_id>-<table>-changelog"
TIMESTAMP_TYPE = "message.timestamp.type"
LOG_APPEND_TIME = "LogAppendTime"
CLEANUP_POLICY = "cleanup.policy"
COMPACT = "compact"
CREATE_TOPICS_HINT = "relief topics --bootstrap {bootstrap} --partitions {partitions}"


class PreflightFailed(RuntimeError):
    """The world is wrong; `problems` holds one line per problem."""

    exit_code = EX_CONFIG

    def __init__(self, problems: Sequence[str]) -> None:
        if not problems:
            raise ValueError("PreflightFailed needs at least one problem")
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))

    def exit(self, stream: TextIO | None = None) -> NoReturn:
        """Print one line per problem (stderr by default) and end the process with its
        exit code (EX_CONFIG; EX_UNAVAILABLE when Kafka was away)."""
        out = stream if stream is not None else sys.stderr
        for line in self.problems:
            print(f"preflight: {line}", file=out)
        out.flush()
        raise SystemExit(self.exit_code)


class KafkaUnavailable(PreflightFailed):
    """Kafka could not be reached or did not answer in time: start again later."""

    exit_code = EX_UNAVAILABLE


@dataclass(frozen=True)
class TopicFacts:
    """What the cluster's metadata says about one topic."""

    name: str
    partitions: int
    replication: int  # the smallest replica count of any of its partitions
    error: str | None = None  # the broker's error name for the topic, if any
    retriable: bool = False


@dataclass(frozen=True)
class World:
    """What the preflight saw: topics by name and the configs it asked for, by topic."""

    topics: Mapping[str, TopicFacts]
    configs: Mapping[str, Mapping[str, str | None]]
    config_errors: Mapping[str, str]  # topic -> the broker's error describing its configs


async def check_world(
    bootstrap: str,
    *,
    intake_topic: str,
    partitions: int,
    changelog_prefix: str,
    changelog_replication: int,
    output_topics: Sequence[str],
    timeout_s: float = PREFLIGHT_TIMEOUT_S,
) -> list[str]:
    """The problems of the world at `bootstrap`, one line each; `[]` when it is right.

    `changelog_prefix` is usually "<app_id>-": topics named `<prefix>…-changelog` are the
    app's table changelogs. A changelog that does not exist yet is fine (the worker creates
    it); one that exists must have `partitions` partitions, at least
    `changelog_replication` replicas and `cleanup.policy=compact`.
    """
    problems, _away = await _inspect(
        bootstrap,
        intake_topic=intake_topic,
        partitions=partitions,
        changelog_prefix=changelog_prefix,
        changelog_replication=changelog_replication,
        output_topics=output_topics,
        timeout_s=timeout_s,
    )
    return problems


async def _inspect(
    bootstrap: str,
    *,
    intake_topic: str,
    partitions: int,
    changelog_prefix: str,
    changelog_replication: int,
    output_topics: Sequence[str],
    timeout_s: float,
) -> tuple[list[str], bool]:
    """`check_world`'s problems, and whether they are only that Kafka was away."""
    if partitions < 1 or changelog_replication < 1:
        raise ValueError("partitions and changelog_replication must be at least 1")
    if not changelog_prefix:
        raise ValueError("changelog_prefix must not be empty (it would match other apps' topics)")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    unreachable = (
        f"Kafka at {bootstrap} cannot be reached within {timeout_s:g} s: "
        "check RELIEF_KAFKA_BOOTSTRAP and that the brokers are up"
    )
    admin = AIOKafkaAdminClient(
        **kafka_security.client_options(),
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1, int(timeout_s * 1000)),
    )
    reached = False
    try:
        async with asyncio.timeout(timeout_s):
            try:
                await admin.start()
                reached = True
                settle_s = min(METADATA_SETTLE_S, timeout_s / 2)
                world = await _observe(
                    admin, intake_topic, changelog_prefix, output_topics, settle_s
                )
            finally:
                await admin.close()
    except (TimeoutError, KafkaConnectionError):
        if reached:
            return [
                f"Kafka at {bootstrap} answered but did not describe the topics within "
                f"{timeout_s:g} s: check the brokers' health, or give the preflight more time"
            ], True
        return [unreachable], True
    except KafkaError as err:
        return [
            f"Kafka at {bootstrap} refused the preflight's requests ({type(err).__name__}: "
            f"{err}): let this client describe topics and their configs"
        ], False
    return judge(
        world,
        bootstrap=bootstrap,
        intake_topic=intake_topic,
        partitions=partitions,
        changelog_prefix=changelog_prefix,
        changelog_replication=changelog_replication,
        output_topics=output_topics,
    ), False


def require_world(
    bootstrap: str,
    *,
    intake_topic: str,
    partitions: int,
    changelog_prefix: str,
    changelog_replication: int,
    output_topics: Sequence[str],
    timeout_s: float = PREFLIGHT_TIMEOUT_S,
) -> None:
    """`check_world` for a process's entry point (no event loop running yet).

    Raises `PreflightFailed` with every problem (`KafkaUnavailable` when Kafka was only
    away); the caller prints and exits with `failed.exit()`.
    """
    problems, away = asyncio.run(
        _inspect(
            bootstrap,
            intake_topic=intake_topic,
            partitions=partitions,
            changelog_prefix=changelog_prefix,
            changelog_replication=changelog_replication,
            output_topics=output_topics,
            timeout_s=timeout_s,
        )
    )
    if away:
        raise KafkaUnavailable(problems)
    if problems:
        raise PreflightFailed(problems)


def is_changelog(name: str, changelog_prefix: str) -> bool:
    # The suffix matters: Faust's leader topic "<app_id>-__assignor-__leader" shares the prefix.
    return name.startswith(changelog_prefix) and name.endswith(CHANGELOG_SUFFIX)


def judge(
    world: World,
    *,
    bootstrap: str,
    intake_topic: str,
    partitions: int,
    changelog_prefix: str,
    changelog_replication: int,
    output_topics: Sequence[str],
) -> list[str]:
    """The problems in what was seen (pure): intake first, then outputs, then changelogs."""
    create = CREATE_TOPICS_HINT.format(bootstrap=bootstrap, partitions=partitions)
    problems: list[str] = []

    intake = world.topics.get(intake_topic)
    if intake is None:
        problems.append(f"intake topic {intake_topic} does not exist: create it ({create})")
    elif intake.error is not None:
        problems.append(_unusable("intake topic", intake))
    else:
        if intake.partitions != partitions:
            problems.append(
                f"intake topic {intake_topic} has {intake.partitions} partitions but "
                f"RELIEF_PARTITIONS={partitions}: towns would be decided on the wrong "
                f"partition; set RELIEF_PARTITIONS={intake.partitions} or recreate the topic"
            )
        problems.extend(_config_error(world, intake_topic, "intake topic"))
        stamp = world.configs.get(intake_topic, {}).get(TIMESTAMP_TYPE)
        if intake_topic not in world.config_errors and stamp != LOG_APPEND_TIME:
            problems.append(
                f"intake topic {intake_topic} has {TIMESTAMP_TYPE}={stamp}; deadlines need "
                f"the broker's clock: set {TIMESTAMP_TYPE}={LOG_APPEND_TIME} "
                "(docs/design.md 'one clock for every deadline')"
            )

    for name in output_topics:
        output = world.topics.get(name)
        if output is None:
            problems.append(f"output topic {name} does not exist: create it ({create})")
        elif output.error is not None:
            problems.append(_unusable("output topic", output))

    for name in sorted(n for n in world.topics if is_changelog(n, changelog_prefix)):
        changelog = world.topics[name]
        if changelog.error is not None:
            problems.append(_unusable("changelog topic", changelog))
            continue
        if changelog.replication < changelog_replication:
            problems.append(
                f"changelog topic {name} has replication factor {changelog.replication} "
                f"but {changelog_replication} is required: losing a broker would lose town "
                f"state; reassign its partitions to {changelog_replication} replicas"
            )
        if changelog.partitions != partitions:
            problems.append(
                f"changelog topic {name} has {changelog.partitions} partitions but "
                f"RELIEF_PARTITIONS={partitions}: a table partition is restored from the "
                f"changelog partition of the same number; recreate the topic with "
                f"{partitions} partitions or set RELIEF_PARTITIONS={changelog.partitions}"
            )
        problems.extend(_config_error(world, name, "changelog topic"))
        policy = world.configs.get(name, {}).get(CLEANUP_POLICY)
        if name not in world.config_errors and policy != COMPACT:
            problems.append(
                f"changelog topic {name} has {CLEANUP_POLICY}={policy}; a table's changelog "
                f"must keep every key's latest value: set {CLEANUP_POLICY}={COMPACT}"
            )
    return problems


def _unusable(role: str, topic: TopicFacts) -> str:
    return (
        f"{role} {topic.name} is not usable: the broker answers {topic.error} for it; "
        "check the topic's leaders and this client's permission to describe it"
    )


def _config_error(world: World, name: str, role: str) -> list[str]:
    error = world.config_errors.get(name)
    if error is None:
        return []
    return [
        f"{role} {name}: the broker refuses to describe its configuration ({error}); "
        "let this client describe topic configs"
    ]


async def _observe(
    admin: AIOKafkaAdminClient,
    intake_topic: str,
    changelog_prefix: str,
    output_topics: Sequence[str],
    settle_s: float,
) -> World:
    wanted = {intake_topic, *output_topics}
    loop = asyncio.get_running_loop()
    settle_until = loop.time() + settle_s
    while True:
        # Every topic (None), never the names we look for: on a broker with
        # auto.create.topics.enable, asking for a missing topic's metadata creates it.
        described: list[dict[str, Any]] = await admin.describe_topics(None)
        topics = {
            t["topic"]: _facts(t)
            for t in described
            if t["topic"] in wanted or is_changelog(t["topic"], changelog_prefix)
        }
        settled = wanted <= topics.keys() and not any(f.retriable for f in topics.values())
        if settled or loop.time() + METADATA_RETRY_S > settle_until:
            break
        await asyncio.sleep(METADATA_RETRY_S)

    asked: dict[str, str] = {}
    if intake_topic in topics and topics[intake_topic].error is None:
        asked[intake_topic] = TIMESTAMP_TYPE
    for name, facts in topics.items():
        if is_changelog(name, changelog_prefix) and facts.error is None:
            asked[name] = CLEANUP_POLICY
    configs, config_errors = await _describe_configs(admin, asked)
    return World(topics=topics, configs=configs, config_errors=config_errors)


def _facts(topic: Mapping[str, Any]) -> TopicFacts:
    # the shape of MetadataResponse.to_object(): aiokafka/protocol/metadata.py
    partitions: list[dict[str, Any]] = topic["partitions"]
    replication = min((len(p["replicas"]) for p in partitions), default=0)
    error, retriable = _error(topic["error_code"])
    return TopicFacts(
        name=topic["topic"],
        partitions=len(partitions),
        replication=replication,
        error=error,
        retriable=retriable,
    )


def _error(code: int) -> tuple[str | None, bool]:
    if code == 0:
        return None, False
    cls = for_code(code)
    return str(getattr(cls, "message", cls.__name__)), bool(getattr(cls, "retriable", False))


async def _describe_configs(
    admin: AIOKafkaAdminClient, asked: Mapping[str, str]
) -> tuple[dict[str, dict[str, str | None]], dict[str, str]]:
    """One config of each topic in `asked` (topic -> config name)."""
    if not asked:
        return {}, {}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, configs={config: None})
        for name, config in asked.items()
    ]
    responses: Iterable[Any] = await admin.describe_configs(resources)
    configs: dict[str, dict[str, str | None]] = {}
    errors: dict[str, str] = {}
    for response in responses:
        # the shape of DescribeConfigsResponse.to_object(): aiokafka/protocol/admin.py
        for resource in response.to_object()["resources"]:
            name: str = resource["resource_name"]
            error, _ = _error(resource["error_code"])
            if error is not None:
                errors[name] = error
                continue
            configs[name] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return configs, errors
