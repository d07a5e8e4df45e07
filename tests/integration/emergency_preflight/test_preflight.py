"""The worker's preflight against the real broker: a right world passes, each wrong thing is
named in one line that says what to do, and several wrong things give several lines.

Every test builds its own world of topics with unique names: the intake topic, the three
outputs, the table's changelog and Faust's leader topic (which shares the changelog prefix
and must not be judged as a changelog). One thing is then made wrong at creation.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Mapping

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.local import stack as local_stack
from services.emergency.adapters.preflight import (
    EX_CONFIG,
    EX_UNAVAILABLE,
    PREFLIGHT_TIMEOUT_S,
    KafkaUnavailable,
    PreflightFailed,
    TopicFacts,
    World,
    check_world,
    judge,
    require_world,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1
UNREACHABLE_TIMEOUT_S = 2.0
ADMIN_TIMEOUT_MS = 30_000
VISIBLE_WITHIN_S = 10.0


class Cluster:
    """Creates topics for one test and deletes them afterwards."""

    def __init__(self, bootstrap: str, unique: str) -> None:
        self.bootstrap = bootstrap
        self.intake = f"test.preflight.intake.{unique}"
        self.decisions = f"test.preflight.decisions.{unique}"
        self.postings = f"test.preflight.postings.{unique}"
        self.rejected = f"test.preflight.rejected.{unique}"
        self.outputs = (self.decisions, self.postings, self.rejected)
        self.changelog_prefix = f"test-preflight-{unique}-"
        self.changelog = f"{self.changelog_prefix}towns-changelog"
        self.leader = f"{self.changelog_prefix}__assignor-__leader"
        self.created: list[str] = []

    def right_world(self) -> dict[str, NewTopic]:
        """The topics as the service needs them (what `relief topics` and Faust create)."""
        return {
            self.intake: _topic(
                self.intake, PARTITIONS, {"message.timestamp.type": "LogAppendTime"}
            ),
            self.decisions: _topic(self.decisions, PARTITIONS),
            self.postings: _topic(self.postings, PARTITIONS),
            self.rejected: _topic(self.rejected, PARTITIONS),
            self.changelog: _topic(self.changelog, PARTITIONS, {"cleanup.policy": "compact"}),
            self.leader: _topic(self.leader, 1),
        }

    async def create(self, topics: Mapping[str, NewTopic]) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS
        )
        await admin.start()
        try:
            response = await admin.create_topics(list(topics.values()))
            self.created.extend(topics)
            failed = [e for e in response.to_object()["topic_errors"] if e["error_code"] != 0]
            assert not failed, f"could not create the test's topics: {failed}"
            # the controller has them; wait until the broker's metadata shows them too, so a
            # test judges the world it built and not the moment before
            deadline = time.monotonic() + VISIBLE_WITHIN_S
            while not set(topics) <= set(await admin.list_topics()):
                assert time.monotonic() < deadline, f"{list(topics)} not visible in metadata"
                await asyncio.sleep(0.05)
        finally:
            await admin.close()

    async def delete_created(self) -> None:
        if not self.created:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS
        )
        await admin.start()
        try:
            await admin.delete_topics(self.created)
        finally:
            await admin.close()

    async def check(
        self,
        *,
        partitions: int = PARTITIONS,
        changelog_replication: int = 1,
        timeout_s: float = PREFLIGHT_TIMEOUT_S,
    ) -> list[str]:
        return await check_world(
            self.bootstrap,
            intake_topic=self.intake,
            partitions=partitions,
            changelog_prefix=self.changelog_prefix,
            changelog_replication=changelog_replication,
            output_topics=self.outputs,
            timeout_s=timeout_s,
        )


def _topic(name: str, partitions: int, configs: dict[str, str] | None = None) -> NewTopic:
    return NewTopic(
        name=name, num_partitions=partitions, replication_factor=1, topic_configs=configs or {}
    )


@pytest.fixture
async def cluster(stack: local_stack.StackInfo, unique: str) -> AsyncIterator[Cluster]:
    world = Cluster(stack.kafka_bootstrap, unique)
    try:
        yield world
    finally:
        await world.delete_created()


async def test_a_right_world_has_no_problems(cluster: Cluster) -> None:
    await cluster.create(cluster.right_world())

    assert await cluster.check() == []


async def test_an_intake_topic_with_other_partitions_than_relief_partitions_is_named(
    cluster: Cluster,
) -> None:
    topics = cluster.right_world()
    topics[cluster.intake] = _topic(
        cluster.intake, PARTITIONS + 1, {"message.timestamp.type": "LogAppendTime"}
    )
    await cluster.create(topics)

    assert await cluster.check() == [
        f"intake topic {cluster.intake} has 4 partitions but RELIEF_PARTITIONS=3: towns would "
        "be decided on the wrong partition; set RELIEF_PARTITIONS=4 or recreate the topic"
    ]


async def test_an_intake_topic_stamped_by_the_producers_clock_is_named(cluster: Cluster) -> None:
    topics = cluster.right_world()
    topics[cluster.intake] = _topic(
        cluster.intake, PARTITIONS, {"message.timestamp.type": "CreateTime"}
    )
    await cluster.create(topics)

    assert await cluster.check() == [
        f"intake topic {cluster.intake} has message.timestamp.type=CreateTime; deadlines need "
        "the broker's clock: set message.timestamp.type=LogAppendTime "
        "(docs/design.md 'one clock for every deadline')"
    ]


async def test_a_missing_intake_topic_is_named_with_how_to_create_it(cluster: Cluster) -> None:
    topics = cluster.right_world()
    del topics[cluster.intake]
    await cluster.create(topics)

    assert await cluster.check() == [
        f"intake topic {cluster.intake} does not exist: create it "
        f"(relief topics --bootstrap {cluster.bootstrap} --partitions 3)"
    ]


async def test_a_missing_output_topic_is_named_and_not_created_by_asking(
    cluster: Cluster,
) -> None:
    topics = cluster.right_world()
    del topics[cluster.postings]
    await cluster.create(topics)

    expected = [
        f"output topic {cluster.postings} does not exist: create it "
        f"(relief topics --bootstrap {cluster.bootstrap} --partitions 3)"
    ]
    assert await cluster.check() == expected
    # the local broker auto-creates topics whose metadata is asked for by name: the
    # preflight asks for every topic instead, so a second look still finds it missing
    assert await cluster.check() == expected
    # waiting for a late topic takes at most half the timeout: a short one still names it
    assert await cluster.check(timeout_s=1.0) == expected


async def test_a_changelog_that_deletes_instead_of_compacting_is_named(cluster: Cluster) -> None:
    topics = cluster.right_world()
    topics[cluster.changelog] = _topic(cluster.changelog, PARTITIONS, {"cleanup.policy": "delete"})
    await cluster.create(topics)

    assert await cluster.check() == [
        f"changelog topic {cluster.changelog} has cleanup.policy=delete; a table's changelog "
        "must keep every key's latest value: set cleanup.policy=compact"
    ]


async def test_a_changelog_with_other_partitions_than_relief_partitions_is_named(
    cluster: Cluster,
) -> None:
    topics = cluster.right_world()
    topics[cluster.changelog] = _topic(
        cluster.changelog, PARTITIONS - 1, {"cleanup.policy": "compact"}
    )
    await cluster.create(topics)

    assert await cluster.check() == [
        f"changelog topic {cluster.changelog} has 2 partitions but RELIEF_PARTITIONS=3: a "
        "table partition is restored from the changelog partition of the same number; "
        "recreate the topic with 3 partitions or set RELIEF_PARTITIONS=2"
    ]


async def test_a_changelog_with_too_few_replicas_is_named(cluster: Cluster) -> None:
    await cluster.create(cluster.right_world())

    # the local broker is alone: every topic has one replica; ask for two
    assert await cluster.check(changelog_replication=2) == [
        f"changelog topic {cluster.changelog} has replication factor 1 but 2 is required: "
        "losing a broker would lose town state; reassign its partitions to 2 replicas"
    ]


async def test_a_world_without_a_changelog_yet_is_right(cluster: Cluster) -> None:
    # the first worker creates the changelog itself
    topics = cluster.right_world()
    del topics[cluster.changelog]
    await cluster.create(topics)

    assert await cluster.check() == []


async def test_several_wrong_things_give_one_line_each_intake_first(cluster: Cluster) -> None:
    topics = cluster.right_world()
    topics[cluster.intake] = _topic(
        cluster.intake, PARTITIONS, {"message.timestamp.type": "CreateTime"}
    )
    del topics[cluster.decisions]
    del topics[cluster.rejected]
    topics[cluster.changelog] = _topic(cluster.changelog, PARTITIONS, {"cleanup.policy": "delete"})
    await cluster.create(topics)

    problems = await cluster.check(changelog_replication=2)

    assert len(problems) == 5, problems
    assert problems[0].startswith(f"intake topic {cluster.intake} has message.timestamp.type=")
    assert problems[1].startswith(f"output topic {cluster.decisions} does not exist")
    assert problems[2].startswith(f"output topic {cluster.rejected} does not exist")
    assert problems[3].startswith(f"changelog topic {cluster.changelog} has replication factor 1")
    assert problems[4].startswith(f"changelog topic {cluster.changelog} has cleanup.policy=delete")
    assert all("\n" not in p for p in problems)


async def test_an_unreachable_broker_is_one_line_within_the_timeout() -> None:
    started = time.monotonic()

    problems = await check_world(
        UNREACHABLE,
        intake_topic="relief.intake.v1",
        partitions=PARTITIONS,
        changelog_prefix="relief-emergency-",
        changelog_replication=1,
        output_topics=("relief.decisions.v1",),
        timeout_s=UNREACHABLE_TIMEOUT_S,
    )

    assert problems == [
        f"Kafka at {UNREACHABLE} cannot be reached within 2 s: check RELIEF_KAFKA_BOOTSTRAP "
        "and that the brokers are up"
    ]
    assert time.monotonic() - started < UNREACHABLE_TIMEOUT_S + 1.0


async def test_a_broker_that_accepts_but_never_answers_is_one_line_within_the_timeout() -> None:
    # a hung broker or a wrong port behind a proxy: the connection opens, no answer comes
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = f"127.0.0.1:{port}"
    started = time.monotonic()
    try:
        problems = await check_world(
            silent,
            intake_topic="relief.intake.v1",
            partitions=PARTITIONS,
            changelog_prefix="relief-emergency-",
            changelog_replication=1,
            output_topics=("relief.decisions.v1",),
            timeout_s=UNREACHABLE_TIMEOUT_S,
        )
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

    assert problems == [
        f"Kafka at {silent} cannot be reached within 2 s: check RELIEF_KAFKA_BOOTSTRAP "
        "and that the brokers are up"
    ]
    assert UNREACHABLE_TIMEOUT_S - 0.5 < time.monotonic() - started < UNREACHABLE_TIMEOUT_S + 1.0


async def test_the_entry_point_exits_with_ex_unavailable_while_kafka_is_away() -> None:
    # Kafka away is no configuration to fix: a supervisor starts the worker again (69),
    # as after a Kafka outage. require_world runs its own event loop, as a process's
    # entry point does: give it a thread
    with pytest.raises(KafkaUnavailable) as raised:
        await asyncio.to_thread(
            require_world,
            UNREACHABLE,
            intake_topic="relief.intake.v1",
            partitions=PARTITIONS,
            changelog_prefix="relief-emergency-",
            changelog_replication=1,
            output_topics=("relief.decisions.v1",),
            timeout_s=UNREACHABLE_TIMEOUT_S,
        )
    failed = raised.value
    assert failed.problems == (
        f"Kafka at {UNREACHABLE} cannot be reached within 2 s: check RELIEF_KAFKA_BOOTSTRAP "
        "and that the brokers are up",
    )

    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        failed.exit(out)
    assert exited.value.code == EX_UNAVAILABLE == 69
    assert out.getvalue() == f"preflight: {failed.problems[0]}\n"


async def test_the_entry_point_raises_every_problem_and_exits_with_ex_config(
    cluster: Cluster,
) -> None:
    topics = cluster.right_world()
    del topics[cluster.intake]
    await cluster.create(topics)

    with pytest.raises(PreflightFailed) as raised:
        await asyncio.to_thread(
            require_world,
            cluster.bootstrap,
            intake_topic=cluster.intake,
            partitions=PARTITIONS,
            changelog_prefix=cluster.changelog_prefix,
            changelog_replication=1,
            output_topics=cluster.outputs,
        )
    failed = raised.value
    assert not isinstance(failed, KafkaUnavailable)
    assert failed.problems == (
        f"intake topic {cluster.intake} does not exist: create it "
        f"(relief topics --bootstrap {cluster.bootstrap} --partitions 3)",
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        failed.exit(out)
    assert exited.value.code == EX_CONFIG == 78


async def test_the_entry_point_passes_a_right_world(cluster: Cluster) -> None:
    await cluster.create(cluster.right_world())

    await asyncio.to_thread(
        require_world,
        cluster.bootstrap,
        intake_topic=cluster.intake,
        partitions=PARTITIONS,
        changelog_prefix=cluster.changelog_prefix,
        changelog_replication=1,
        output_topics=cluster.outputs,
    )


def test_a_topic_the_broker_reports_an_error_for_is_named_not_judged() -> None:
    # a leader that stays unavailable (a broker down) cannot be provoked on one local broker
    world = World(
        topics={
            "in": TopicFacts("in", PARTITIONS, 1),
            "out": TopicFacts("out", 0, 0, error="LEADER_NOT_AVAILABLE", retriable=True),
            "app-towns-changelog": TopicFacts("app-towns-changelog", PARTITIONS, 1),
        },
        configs={
            "in": {"message.timestamp.type": "LogAppendTime"},
            "app-towns-changelog": {"cleanup.policy": "compact,delete"},
        },
        config_errors={},
    )

    assert judge(
        world,
        bootstrap="b:9092",
        intake_topic="in",
        partitions=PARTITIONS,
        changelog_prefix="app-",
        changelog_replication=1,
        output_topics=("out",),
    ) == [
        "output topic out is not usable: the broker answers LEADER_NOT_AVAILABLE for it; "
        "check the topic's leaders and this client's permission to describe it",
        "changelog topic app-towns-changelog has cleanup.policy=compact,delete; a table's "
        "changelog must keep every key's latest value: set cleanup.policy=compact",
    ]
