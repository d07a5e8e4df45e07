"""The one way the service writes to Kafka: acknowledged by every in-sync replica.

acks=all with idempotence: an acknowledged record is on every in-sync replica (with the
topics' min.insync.replicas 2 on a cluster, on two brokers at least), and the producer's
own retries never write it twice to the log. Intake's records, the processor's outputs,
the clock's ticks and the consumers' dead letters all go through `acknowledged_producer`;
each caller adds what is its own (linger, timeouts, sizes).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from relief_platform import kafka_security

# what no caller may change: the guarantees above
_ACKNOWLEDGED = {"acks": "all", "enable_idempotence": True}


def acknowledged_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """A producer (not started) with the clients' security options, acks=all and
    idempotence; `options` are aiokafka's others (linger_ms, request_timeout_ms ...)."""
    overridden = sorted(set(options) & set(_ACKNOWLEDGED))
    if overridden:
        raise ValueError(f"{overridden}: every producer of the service waits for all replicas")
    return AIOKafkaProducer(
        **kafka_security.client_options(),
        bootstrap_servers=bootstrap,
        **_ACKNOWLEDGED,
        **options,
    )
