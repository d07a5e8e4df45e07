"""How every Kafka client of the service authenticates: TLS and SASL/SCRAM (issue 13,
item 8: an open Kafka lets anyone on the network write intake commands or postings).

Read from the environment like every other setting (prefix `RELIEF_KAFKA_`):

    RELIEF_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL
    RELIEF_KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default), SCRAM-SHA-256, PLAIN
    RELIEF_KAFKA_SASL_USERNAME       the service's principal (intake, emergency, ledger, ...)
    RELIEF_KAFKA_SASL_PASSWORD       its password
    RELIEF_KAFKA_SSL_CAFILE          CA bundle the brokers' certificates are checked against
    RELIEF_KAFKA_SSL_CERTFILE, RELIEF_KAFKA_SSL_KEYFILE   a client certificate (mutual TLS)

`client_options()` gives the keyword arguments of aiokafka's producers, consumers and
admin clients; `faust_credentials()` the processor's broker credentials. In production
(`RELIEF_ENV=production`) a plaintext, unauthenticated connection is refused.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relief_platform import secrets

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaSecurity(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_KAFKA_", extra="ignore")

    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str = Field(default="", max_length=256)
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.sasl and not (self.sasl_username and self.sasl_password.get_secret_value()):
            raise ValueError(
                f"RELIEF_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "RELIEF_KAFKA_SASL_USERNAME and RELIEF_KAFKA_SASL_PASSWORD"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("RELIEF_KAFKA_SSL_CERTFILE and RELIEF_KAFKA_SSL_KEYFILE go together")
        return self

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        # hostname and certificate always checked (create_default_context's defaults)
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options


def settings() -> KafkaSecurity:
    """This process's Kafka security, from the environment; refused in production when
    it would be plaintext without authentication."""
    found = KafkaSecurity()
    if secrets.in_production() and found.security_protocol == "PLAINTEXT":
        raise secrets.MissingSecretError(
            "RELIEF_ENV=production: set RELIEF_KAFKA_SECURITY_PROTOCOL (SASL_SSL) and the "
            "service's Kafka credentials; an open Kafka lets anyone write intake or postings"
        )
    return found


def client_options(security: KafkaSecurity | None = None) -> dict[str, Any]:
    return (security or settings()).client_options()


def faust_credentials(security: KafkaSecurity | None = None) -> Any:
    """The processor's `broker_credentials` for faust.App (None: plaintext)."""
    import faust

    found = security or settings()
    if found.sasl:
        return faust.SASLCredentials(
            username=found.sasl_username,
            password=found.sasl_password.get_secret_value(),
            mechanism=found.sasl_mechanism,
            ssl_context=found.ssl_context(),
        )
    if found.tls:
        return faust.SSLCredentials(found.ssl_context())
    return None
