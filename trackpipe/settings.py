"""The one settings class: every service reads its configuration from TRACKPIPE_* environment variables.

Nested edge limits use ``__``: ``TRACKPIPE_EDGE__MAX_BODY_BYTES=65536``. CLI flags override env values.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.config.edge import EdgeConfig
from ingest.http.keys import check_key, parse_read_keys
from schemas.outbound.config import OutboundConfig

if TYPE_CHECKING:
    from processors.config import ProcessingConfig

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _uses_tls(protocol: object) -> bool:
    return protocol in ("SSL", "SASL_SSL")


def _readable_file(value: Path | None) -> Path | None:
    if value is None:
        return None
    if not value.is_file():
        raise ValueError(f"no such file: {value}")
    try:
        value.open("rb").close()
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror}") from None
    return value


def kafka_ssl_context(
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    key_password: str | None,
    check_hostname: bool,
) -> ssl.SSLContext:
    """The TLS context of every Kafka client: the broker's certificate is verified against ``cafile``
    (the system's trust store without it), and its name against the bootstrap host unless
    ``check_hostname`` is off; ``certfile`` (+ ``keyfile``) is the client certificate for mTLS."""
    from aiokafka.helpers import create_ssl_context

    # without a password OpenSSL would prompt on the terminal for an encrypted key: never wait for that
    password = key_password if key_password is not None else (lambda: "")
    context = create_ssl_context(
        cafile=cafile,
        certfile=certfile,
        keyfile=keyfile if certfile is not None else None,
        password=password if certfile is not None else None,
    )
    context.check_hostname = check_hostname  # verify_mode stays CERT_REQUIRED either way
    return context


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
    # Kafka security (docs/kafka-security.md); validated together below, in this order of declaration
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    kafka_sasl_mechanism: str | None = Field(
        None, validate_default=True, description="SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, validate_default=True, description="SASL user")
    kafka_sasl_password: SecretStr | None = Field(None, validate_default=True, description="SASL password")
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="SSL/SASL_SSL: PEM CA bundle the broker certificates are checked against "
        "(unset: the system's trust store)",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="password of an encrypted TRACKPIPE_KAFKA_SSL_KEYFILE"
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="mTLS: PEM client certificate (chain), may also hold the key"
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, validate_default=True, description="mTLS: PEM private key of the client certificate"
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="check that the broker certificate names the host connected to"
    )

    clickhouse_host: str = Field("127.0.0.1", description="ClickHouse server (distributed mode)")
    clickhouse_port: int = Field(8123, description="ClickHouse HTTP port")
    clickhouse_database: str = Field("trackpipe", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    clickhouse_secure: bool = False
    retention_days: int = Field(0, ge=0, le=36500, description="TTL of stored rows in days (0 = keep)")
    report_counter_days: int = Field(
        400,
        ge=0,
        le=3650,
        description="embedded mode: the Top-5 counters answer whole-day periods up to this many days "
        "(a visitor's days are kept 2x this long); 0 = no counters (decisions 150-152)",
    )

    stream_topic: str = Field(
        "", description="public conversion stream topic (distributed); empty: <kafka_topic>.stream"
    )
    stream_retention_days: float = Field(
        7, gt=0, le=3650, description="how long the public stream keeps messages (resumable window)"
    )

    worker_app_id: str = Field("trackpipe-worker", description="Faust app id (= consumer group)")
    worker_batch_max: int = Field(
        32,
        ge=1,
        description="records per processing batch (the records of a batch are alive together; decision 174)",
    )
    worker_batch_within_s: float = Field(0.1, gt=0, description="longest wait to fill a batch")
    worker_batch_slice_bytes: int = Field(
        4 * 2**20,
        ge=1,
        description="a batch is processed in slices of at most this many bytes of records (bounds memory)",
    )
    worker_prefetch_records: int = Field(
        32,
        ge=1,
        description="records each stage stream fetches ahead of processing (Faust's stream_buffer_maxsize;"
        " a record is an envelope of many events)",
    )
    worker_fetch_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="bytes each partition fetches ahead (Kafka's max.partition.fetch.bytes; a larger record"
        " still comes whole)",
    )
    worker_release_memory_s: float = Field(
        1.0,
        ge=0,
        description="after a committed batch, give freed memory back to the system at most this often"
        " (seconds; 0: never)",
    )
    worker_store: str = Field(
        "rocksdb://",
        description="Faust table store: rocksdb:// (state on disk under the data dir, one worker per data"
        " dir; decision 167) or memory://",
    )
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

    @field_validator("kafka_security_protocol")
    @classmethod
    def _kafka_protocol(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in KAFKA_PROTOCOLS:
            raise ValueError(
                f"unknown Kafka security protocol {value!r}; one of {', '.join(KAFKA_PROTOCOLS)}"
            )
        return value

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _kafka_mechanism(cls, value: str | None, info: ValidationInfo) -> str | None:
        protocol = info.data.get("kafka_security_protocol")
        if value is not None:
            value = value.strip().upper() or None
        if protocol is None:  # invalid itself: reported on its own
            return value
        sasl = str(protocol).startswith("SASL_")
        if sasl and value is None:
            raise ValueError(
                f"required with TRACKPIPE_KAFKA_SECURITY_PROTOCOL={protocol}: "
                f"one of {', '.join(KAFKA_SASL_MECHANISMS)}"
            )
        if not sasl and value is not None:
            raise ValueError(
                f"set, but TRACKPIPE_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                "(SASL_SSL or SASL_PLAINTEXT does)"
            )
        if value is not None and value not in KAFKA_SASL_MECHANISMS:
            raise ValueError(
                f"unsupported SASL mechanism {value!r}; one of {', '.join(KAFKA_SASL_MECHANISMS)}"
            )
        return value

    @field_validator("kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _kafka_sasl_user(cls, value: Any, info: ValidationInfo) -> Any:
        if "kafka_sasl_mechanism" not in info.data or "kafka_security_protocol" not in info.data:
            return value  # invalid themselves: reported on their own
        mechanism = info.data["kafka_sasl_mechanism"]
        empty = value is None or not (value.get_secret_value() if isinstance(value, SecretStr) else value)
        if mechanism is not None and empty:
            raise ValueError(f"required with TRACKPIPE_KAFKA_SASL_MECHANISM={mechanism}")
        if mechanism is None and not empty:
            raise ValueError(
                f"set, but TRACKPIPE_KAFKA_SECURITY_PROTOCOL={info.data['kafka_security_protocol']} "
                "does not use SASL"
            )
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile")
    @classmethod
    def _kafka_tls_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        protocol = info.data.get("kafka_security_protocol")
        if value is not None and protocol is not None and not _uses_tls(protocol):
            raise ValueError(
                f"set, but TRACKPIPE_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                "(SSL or SASL_SSL does)"
            )
        value = _readable_file(value)
        if value is not None and info.field_name == "kafka_ssl_cafile":
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"{value} holds no usable PEM CA certificate: {exc}") from None
        return value

    @field_validator("kafka_ssl_keyfile")
    @classmethod
    def _kafka_client_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """Checked last: the client certificate and key are loaded once here, so a wrong file or key
        password is named at start-up rather than at the first connection."""
        value = _readable_file(value)
        certfile = info.data.get("kafka_ssl_certfile")
        password: SecretStr | None = info.data.get("kafka_ssl_key_password")
        if value is not None and certfile is None:
            if "kafka_ssl_certfile" in info.data:
                raise ValueError("set without TRACKPIPE_KAFKA_SSL_CERTFILE (the client certificate)")
            return value
        if password is not None and certfile is None and "kafka_ssl_certfile" in info.data:
            raise ValueError(
                "TRACKPIPE_KAFKA_SSL_KEY_PASSWORD is set without TRACKPIPE_KAFKA_SSL_CERTFILE / _KEYFILE"
            )
        if certfile is not None:
            context = ssl.create_default_context()
            secret = password.get_secret_value() if password is not None else ""
            try:
                context.load_cert_chain(certfile, value, lambda: secret)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(
                    f"cannot load the client certificate TRACKPIPE_KAFKA_SSL_CERTFILE={certfile} with "
                    f"its key ({'TRACKPIPE_KAFKA_SSL_KEYFILE=' + str(value) if value else 'in the same file'}"
                    f"{', TRACKPIPE_KAFKA_SSL_KEY_PASSWORD' if password is not None else ''}): "
                    f"{exc.args[-1] if exc.args else exc}"
                ) from None
        return value

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

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """A new TLS context for a Kafka client (None unless the protocol is SSL or SASL_SSL)."""
        if not _uses_tls(self.kafka_security_protocol):
            return None
        return kafka_ssl_context(
            self.kafka_ssl_cafile,
            self.kafka_ssl_certfile,
            self.kafka_ssl_keyfile,
            self.kafka_ssl_key_password.get_secret_value() if self.kafka_ssl_key_password else None,
            self.kafka_ssl_check_hostname,
        )

    def kafka_security(self) -> dict[str, object]:
        """The security keyword options of every aiokafka client (producer, consumer, admin):
        ``security_protocol``, ``ssl_context`` for SSL / SASL_SSL, and the SASL mechanism and user."""
        opts: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        context = self.kafka_ssl_context()
        if context is not None:
            opts["ssl_context"] = context
        if self.kafka_sasl_mechanism:
            opts["sasl_mechanism"] = self.kafka_sasl_mechanism
            opts["sasl_plain_username"] = self.kafka_sasl_username
            opts["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        return opts

    def kafka_broker_credentials(self) -> Any:
        """The same security as Faust's ``broker_credentials`` (None for PLAINTEXT): ``SSLCredentials``
        or ``SASLCredentials`` (with the TLS context for SASL_SSL). Faust is imported only here."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        from faust.auth import SASLCredentials, SSLCredentials

        context = self.kafka_ssl_context()
        if self.kafka_sasl_mechanism is None:
            return SSLCredentials(context)
        return SASLCredentials(
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None,
            ssl_context=context,
            mechanism=self.kafka_sasl_mechanism,
        )

    def kafka_security_summary(self) -> str:
        """How Kafka is reached, for messages (never a password): e.g. ``SASL_SSL, SCRAM-SHA-512 as x``."""
        parts = [self.kafka_security_protocol]
        if self.kafka_sasl_mechanism:
            parts.append(f"{self.kafka_sasl_mechanism} as {self.kafka_sasl_username!r}")
        if self.kafka_ssl_certfile is not None:
            parts.append("client certificate")
        return ", ".join(parts)
