"""`/metrics` of the consumers and the processor listens on loopback unless told
otherwise: the figures (reserves, lag, case counts by town) are not for the network."""

from __future__ import annotations

import socket
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from services.casebook.settings import CasebookSettings
from services.emergency.adapters import metrics as processor_metrics
from services.emergency.settings import EmergencySettings
from services.ledger.app import LedgerSettings


def listening_on(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp spells them) listening on `port`."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.add(address)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_metrics_endpoint_defaults_to_loopback() -> None:
    hosts = {
        LedgerSettings().metrics_host,
        CasebookSettings().metrics_host,
        EmergencySettings().metrics_host,
    }
    assert hosts == {"127.0.0.1"}
    port = free_port()
    start_http_server(port, addr=LedgerSettings().metrics_host, registry=CollectorRegistry())
    assert listening_on(port) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0


def test_the_processor_serves_metrics_on_loopback_by_default() -> None:
    port = free_port()
    processor_metrics.serve(port)
    assert listening_on(port) == {"0100007F"}
