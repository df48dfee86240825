"""The one settings class: every service reads its configuration from TRACKPIPE_* environment variables.

Nested edge limits use ``__``: ``TRACKPIPE_EDGE__MAX_BODY_BYTES=65536``. CLI flags override env values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.config import EdgeConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRACKPIPE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    host: str = Field("127.0.0.1", description="address the HTTP edge binds")
    port: int = Field(8080, ge=0, le=65535, description="port the HTTP edge binds")
    data_dir: Path = Field(Path("./var"), description="embedded mode: where the log and chdb data live")
    log_level: str = Field("INFO", description="Python log level")

    partitions: int = Field(4, ge=1, le=1000, description="partitions of the events topic (and embedded log)")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    kafka_topic: str = Field("trackpipe.events", description="topic carrying envelope records")
    kafka_replication: int = Field(1, ge=1, description="replication factor used by 'topics create'")
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    kafka_sasl_mechanism: str | None = Field(None, description="e.g. PLAIN or SCRAM-SHA-512")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    clickhouse_host: str = Field("127.0.0.1", description="ClickHouse server (distributed mode)")
    clickhouse_port: int = Field(8123, description="ClickHouse HTTP port")
    clickhouse_database: str = Field("trackpipe", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    clickhouse_secure: bool = False

    worker_app_id: str = Field("trackpipe-worker", description="Faust app id (= consumer group)")
    worker_batch_max: int = Field(2000, ge=1, description="records per processing batch")
    worker_batch_within_s: float = Field(0.5, gt=0, description="longest wait to fill a batch")

    edge: EdgeConfig = Field(default_factory=EdgeConfig)

    def kafka_security(self) -> dict[str, object]:
        opts: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            opts["sasl_mechanism"] = self.kafka_sasl_mechanism
            opts["sasl_plain_username"] = self.kafka_sasl_username
            opts["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return opts
