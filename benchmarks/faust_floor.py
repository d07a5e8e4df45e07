"""The floor of a Faust worker on this machine: what one record costs with no rules at all.

    python benchmarks/faust_floor.py --requests 200000              # needs ./run up's Kafka
    python benchmarks/faust_floor.py --requests 200000 --work read   # Faust's reading alone

The same Faust app the processor runs (`new_app`: RocksDB store, standby replica,
acks=all idempotent outputs, the same batches), on fresh topics, doing the least any
processor that keeps per-case state must do for each request (`--work store`, the default):
decode the record, write one value to the partition's store and its changelog, send one
decision, every send acknowledged by Kafka before the batch is done. `--work send` skips the
store; `--work read` only reads. It prints records/s and the CPU seconds a record costs the
worker *and the broker* (read from /proc), so the ceiling of any processor on these cores
follows: cores / (worker + broker CPU per record).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer  # noqa: E402

from relief_platform import kafka_security  # noqa: E402
from relief_platform.producer import acknowledged_producer  # noqa: E402
from relief_platform.topics import ensure_topics  # noqa: E402
from services.emergency.adapters.faust_app import (  # noqa: E402
    OutputSink,
    _current,
    new_app,
    raw_key,
    raw_topic,
)
from services.emergency.settings import EmergencySettings  # noqa: E402

PARTITIONS = 6


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its threads so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pids() -> list[int]:
    """The local Kafka brokers' JVMs (`./run up` starts them with kafka.Kafka)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and b"kafka.Kafka" in cmdline:
            pids.append(int(proc.name))
    return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(work: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(  # noqa: S603 (this very script, as the worker)
            [sys.executable, __file__, "--worker", work], env=env, stdout=out, stderr=out
        )


def outputs(batch: dict[Any, list[Any]]) -> int:
    """The requests a fetch of the floor's outputs stands for (`read` sends a count)."""
    total = 0
    for messages in batch.values():
        for m in messages:
            value = m.value or b""
            total += int(value[2:]) if value.startswith(b"n=") else 1
    return total


def run_worker(work: str) -> None:
    """The floor worker: a Faust app as the processor's, with no rules."""
    settings = EmergencySettings()
    app = new_app(
        settings,
        settings.emergency_app_id,
        settings.emergency_data_dir / settings.emergency_app_id,
        PARTITIONS,
        free_port(),
    )
    intake = raw_topic(app, settings.intake_topic, PARTITIONS)
    table = app.Table("floor", partitions=PARTITIONS)
    sink = OutputSink(settings.kafka_bootstrap, 30.0, {"decisions": settings.decisions_topic})
    changelog = table.changelog_topic.get_topic_name()

    @app.agent(intake)
    async def floor(stream: Any) -> None:
        await sink.start()
        producer: Any = sink._producer
        async for events in stream.take_events(
            settings.emergency_batch_max, within=settings.emergency_batch_within_s
        ):
            if work == "read":  # one record a batch, saying how many were read
                count = f"n={len(events)}".encode()
                await (await producer.send(settings.decisions_topic, value=count))
                continue
            pending: list[tuple[int, bytes, bytes]] = []
            futures = []
            for event in events:
                msg = event.message
                record = json.loads(msg.value)
                value = json.dumps(
                    {"case": record["correlation_id"], "fen": record["requested_fen"]}
                ).encode()
                if work == "store":
                    with _current(event):
                        db = table.data._db_for_partition(msg.partition)  # type: ignore[attr-defined]
                        key = raw_key(f"c/{record['town']}/{record['correlation_id']}")
                        db.put(key, value)
                        pending.append((msg.partition, key, value))
                futures.append(
                    await producer.send(settings.decisions_topic, key=msg.key, value=msg.value)
                )
            await asyncio.gather(*futures)
            if pending:
                await sink.send_raw(changelog, pending)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


async def bench(n: int, work: str, bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    intake, decisions = f"floor.intake.{tag}", f"floor.decisions.{tag}"
    await ensure_topics(
        bootstrap,
        partitions=PARTITIONS,
        names={intake: {"message.timestamp.type": "LogAppendTime"}, decisions: {}},
    )
    tmp = tempfile.mkdtemp(prefix="relief-floor-")
    env = {
        **os.environ,
        "RELIEF_KAFKA_BOOTSTRAP": bootstrap,
        "RELIEF_EMERGENCY_APP_ID": f"floor-{tag}",
        "RELIEF_EMERGENCY_DATA_DIR": tmp,
        "RELIEF_INTAKE_TOPIC": intake,
        "RELIEF_DECISIONS_TOPIC": decisions,
        "RELIEF_PARTITIONS": str(PARTITIONS),
    }
    worker = start_worker(work, env, Path(tmp) / "worker.log")
    # a request as intake writes it (the same size on the wire)
    body = {
        "schema": "relief.requested.v1",
        "event_id": "",
        "occurred_at": "2026-11-30T01:00:00Z",
        "recorded_at": "2026-11-30T01:00:00Z",
        "town": "",
        "actor": {"role": "town", "org": "镇人民政府"},
        "correlation_id": "",
        "urgency": "urgent",
        "category": "emergency",
        "household_ref": "h_" + "0" * 32,
        "requested_fen": 100_000,
        "reason": "benchmark",
    }
    try:
        producer = acknowledged_producer(bootstrap, linger_ms=5)
        await producer.start()
        consumer = AIOKafkaConsumer(
            decisions,
            **kafka_security.client_options(),
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            for k in range(n):
                town = f"town-{k % 9}"
                body.update(event_id=str(uuid.uuid4()), town=town, correlation_id=f"f-{k}")
                await producer.send(intake, key=town.encode(), value=json.dumps(body).encode())
            await producer.flush()
            print(f"{n:,} requests on {intake}; the worker starts on them now")
            brokers = broker_pids()
            # the worker reads from the start once it has joined: time from its first output
            while not (batch := await consumer.getmany(timeout_ms=1000, max_records=5000)):
                if worker.poll() is not None:
                    raise SystemExit(f"the floor worker exited ({worker.returncode}): {tmp}")
            start = time.perf_counter()
            cpu0 = cpu_seconds(worker.pid) or 0.0
            kafka0 = sum(cpu_seconds(p) or 0.0 for p in brokers)
            first = outputs(batch)
            seen = first
            last = time.monotonic()
            while seen < n and time.monotonic() - last < 30:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                if batch:
                    seen += outputs(batch)
                    last = time.monotonic()
            elapsed = time.perf_counter() - start
            cpu = (cpu_seconds(worker.pid) or 0.0) - cpu0
            kafka = sum(cpu_seconds(p) or 0.0 for p in brokers) - kafka0
        finally:
            await producer.stop()
            await consumer.stop()
        done = seen - first
        print(f"floor ({work}): {seen:,}/{n:,} outputs; {done:,} timed in {elapsed:.2f} s")
        print(f"  records/s            {done / elapsed:,.0f}")
        if done:
            per_worker, per_broker = cpu / done * 1000, kafka / done * 1000
            cores = os.cpu_count() or 1
            ceiling = cores * 1000 / (per_worker + per_broker)
            print(f"  worker CPU           {per_worker:.3f} ms a record")
            print(f"  broker CPU           {per_broker:.3f} ms a record ({len(brokers)} broker(s))")
            print(
                f"  ceiling on {cores} cores  {ceiling:,.0f} records/s "
                "(cores / (worker + broker CPU a record), before any rule runs)"
            )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--work", choices=["read", "send", "store"], default="store")
    parser.add_argument("--worker", choices=["read", "send", "store"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("RELIEF_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
        return
    asyncio.run(bench(args.requests, args.work, args.bootstrap))


if __name__ == "__main__":
    main()
