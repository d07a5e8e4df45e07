"""The platform's producer and metrics start-up: the guarantees no caller can drop."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry

from relief_platform.metrics_access import serve_metrics
from relief_platform.producer import acknowledged_producer


@pytest.mark.parametrize("option", [{"acks": 1}, {"enable_idempotence": False}])
async def test_no_producer_of_the_service_writes_without_every_replica(
    option: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="waits for all replicas"):
        acknowledged_producer("127.0.0.1:1", **option)


async def test_a_producer_waits_for_all_replicas_and_keeps_its_own_options() -> None:
    producer = acknowledged_producer("127.0.0.1:1", linger_ms=7)
    try:
        # (aiokafka keeps these privately: acks "all" is -1)
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None  # idempotence: a producer id and sequences
        assert producer._message_accumulator._linger_time == pytest.approx(0.007)
    finally:
        await producer.stop()


def test_metrics_on_a_port_already_taken_do_not_stop_the_service() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_metrics(port, "127.0.0.1", CollectorRegistry(), "a test") is False
    assert serve_metrics(0, "127.0.0.1") is False  # 0: off
