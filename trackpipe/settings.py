"""The one settings class: every service reads its configuration from TRACKPIPE_* environment variables.

Nested edge limits use ``__``: ``TRACKPIPE_EDGE__MAX_BODY_BYTES=65536``. CLI flags override env values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.config.edge import EdgeConfig
from ingest.http.keys import check_key, parse_read_keys
from schemas.outbound.config import OutboundConfig

if TYPE_CHECKING:
    from processors.config import ProcessingConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRACKPIPE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,  # an error must never print a key or a password
    )

    host: str = Field("127.0.0.1", description="address the HTTP edge binds")
    port: int = Field(8080, ge=0, le=65535, description="port the HTTP edge binds")
    data_dir: Path = Field(
        Path("./var"),
        description="embedded mode: log and chdb data; worker: RocksDB state (rocksdb:// store)",
    )
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
    retention_days: int = Field(0, ge=0, le=36500, description="TTL of stored rows in days (0 = keep)")

    stream_topic: str = Field(
        "", description="public conversion stream topic (distributed); empty: <kafka_topic>.stream"
    )
    stream_retention_days: float = Field(
        7, gt=0, le=3650, description="how long the public stream keeps messages (resumable window)"
    )

    worker_app_id: str = Field("trackpipe-worker", description="Faust app id (= consumer group)")
    worker_batch_max: int = Field(2000, ge=1, description="records per processing batch")
    worker_batch_within_s: float = Field(0.1, gt=0, description="longest wait to fill a batch")
    worker_store: str = Field("memory://", description="Faust table store: memory:// or rocksdb://")
    worker_session_timeout_s: float = Field(30.0, gt=0, description="Kafka consumer group session timeout")
    worker_heartbeat_interval_s: float = Field(3.0, gt=0, description="Kafka consumer heartbeat interval")
    worker_metrics_host: str = Field("127.0.0.1", description="address of the worker's /metrics")
    worker_metrics_port: int = Field(
        9465, ge=0, le=65535, description="port of the worker's Prometheus /metrics (0 = not served)"
    )

    # stream processing (issue 4): see README "Processing rules"
    attribution_model: str = Field("last_click", description="default attribution model of a project")
    attribution_models: str = Field("", description="per project: 'project=model,project2=model'")
    attribution_max_window_days: float = Field(30, gt=0, description="longest goal attribution window")
    attribution_goal_windows: str = Field("", description="per goal: 'project/goal=days,...'")
    attribution_half_life_hours: float = Field(168, gt=0, description="half-life of the time-decay model")
    dedup_window_days: float = Field(31, gt=0, description="how long transaction ids are remembered")
    session_gap_minutes: float = Field(30, gt=0, description="inactivity that ends a session")
    visitor_ttl_days: float = Field(4, gt=0, description="vid postbacks resolve this long after activity")
    processing_lateness_hours: float = Field(48, ge=0, description="how late an event may arrive")

    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    outbound: OutboundConfig = Field(
        default_factory=OutboundConfig, description="outbound webhooks and postbacks (TRACKPIPE_OUTBOUND__*)"
    )
    admin_key: SecretStr | None = Field(
        None,
        description="bearer key (≥ 32 characters) of the admin API (goals, links), every report and "
        "/metrics; unset = admin API disabled",
    )
    read_keys: SecretStr | None = Field(
        None, description="per-project report keys (≥ 32 characters): 'project=key,project2=key2'"
    )
    metrics_key: SecretStr | None = Field(None, description="bearer key (≥ 32 characters) of /metrics")

    @field_validator("admin_key", "metrics_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            check_key(f"TRACKPIPE_{str(info.field_name).upper()}", value.get_secret_value())
        return value

    @field_validator("read_keys")
    @classmethod
    def _read_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_read_keys(value.get_secret_value())
        return value

    def kafka_config_topic(self) -> str:
        """Compacted topic holding goals and links (distributed mode)."""
        return f"{self.kafka_topic}.config"

    def kafka_stream_topic(self) -> str:
        """The public conversion stream (CloudEvents keyed by project), apart from the stage topics."""
        return self.stream_topic or f"{self.kafka_topic}.stream"

    def admin_key_value(self) -> str | None:
        return self.admin_key.get_secret_value() if self.admin_key else None

    def read_keys_value(self) -> dict[str, str]:
        """{project: key} of ``TRACKPIPE_READ_KEYS``."""
        return parse_read_keys(self.read_keys.get_secret_value()) if self.read_keys else {}

    def metrics_key_value(self) -> str | None:
        return self.metrics_key.get_secret_value() if self.metrics_key else None

    def processing_config(self) -> ProcessingConfig:
        """The processors' parameters (windows, models, gaps) from these settings."""
        from datetime import timedelta

        from processors.attribution_models import MODELS
        from processors.config import DEFAULT_WINDOW, ProcessingConfig

        models: dict[str, str] = {}
        for item in filter(None, (x.strip() for x in self.attribution_models.split(","))):
            project, _, model = item.partition("=")
            models[project.strip()] = model.strip()
        windows: dict[tuple[str, str], timedelta] = {}
        for item in filter(None, (x.strip() for x in self.attribution_goal_windows.split(","))):
            name, _, days = item.partition("=")
            project, _, goal = name.partition("/")
            windows[(project.strip(), goal.strip())] = timedelta(days=float(days))
        for model in [self.attribution_model, *models.values()]:
            if model not in MODELS:
                raise ValueError(f"unknown attribution model {model!r}; one of {', '.join(MODELS)}")
        default_model = self.attribution_model
        return ProcessingConfig(
            window=lambda p, g: windows.get((p, g), DEFAULT_WINDOW),
            model=lambda p: models.get(p, default_model),  # type: ignore[arg-type,return-value]
            max_window=timedelta(days=self.attribution_max_window_days),
            dedup_window=timedelta(days=self.dedup_window_days),
            session_gap=timedelta(minutes=self.session_gap_minutes),
            visitor_ttl=timedelta(days=self.visitor_ttl_days),
            half_life=timedelta(hours=self.attribution_half_life_hours),
            lateness=timedelta(hours=self.processing_lateness_hours),
        )

    def kafka_security(self) -> dict[str, object]:
        opts: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            opts["sasl_mechanism"] = self.kafka_sasl_mechanism
            opts["sasl_plain_username"] = self.kafka_sasl_username
            opts["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return opts
