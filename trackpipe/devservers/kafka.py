"""A real single-node Apache Kafka broker (KRaft mode) for tests and local development.

The broker jars come from Maven Central through ``deploy/kafka/pom.xml`` and are cached in
``.cache/kafka/libs`` at the repository root (see :func:`ensure_kafka_jars`).  Each
:class:`KafkaBroker` gets its own temporary directory holding ``server.properties``, the
log4j2 configuration, the KRaft metadata/data log dirs and ``broker.log``; it is removed on
:meth:`KafkaBroker.stop`.  :meth:`KafkaBroker.halt` and :meth:`KafkaBroker.restart` stop the JVM
and start it again on the same storage and ports (a rolling restart).

``KafkaBroker(secure=("SSL", "SASL_SSL"))`` opens extra listeners beside the PLAINTEXT one (which stays
the inter-broker listener and the readiness probe's): ``SSL`` (TLS; client certificates required unless
``tls_client_auth=False``), ``SASL_SSL`` and ``SASL_PLAINTEXT`` (SCRAM-SHA-512). A throwaway CA, a broker
certificate for 127.0.0.1/localhost and a client certificate (its key encrypted with a random password)
are made with ``openssl`` into the broker's temp dir at start (:class:`BrokerTls`); the SCRAM user is
created with a random password when the storage is formatted (KRaft, ``format --add-scram``).

Developers can run one in the foreground::

    python -m trackpipe.devservers.kafka [--port 9092]

This module deliberately imports nothing from the rest of the project.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from trackpipe.devservers.ports import pick_free_ports

__all__ = [
    "SCRAM_MECHANISM",
    "SECURE_LISTENERS",
    "BrokerTls",
    "KafkaBroker",
    "KafkaError",
    "KafkaStartError",
    "client_settings",
    "ensure_kafka_jars",
    "find_repo_root",
    "make_tls_material",
]

POM_RELATIVE = Path("deploy") / "kafka" / "pom.xml"
CACHE_RELATIVE = Path(".cache") / "kafka"
MARKER_NAME = ".trackpipe-complete"

KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"

#: JVM flags for the broker: small heap, serial GC and C1 only, so that it stays light on a
#: 2-core machine and starts quickly.  Override with ``KafkaBroker(jvm_opts=...)``.
DEFAULT_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
)
#: JVM flags for the short-lived ``StorageTool format`` run.
TOOL_JVM_OPTS: tuple[str, ...] = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)

LOG4J2_PROPERTIES = """\
status = warn
name = trackpipe-kafka
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""


#: Listeners a broker can open beside PLAINTEXT (``KafkaBroker(secure=...)``).
SECURE_LISTENERS = ("SSL", "SASL_SSL", "SASL_PLAINTEXT")
#: The SASL mechanism of the SASL listeners (the user is created at format time).
SCRAM_MECHANISM = "SCRAM-SHA-512"
_TLS_DAYS = "2"  # the material lives as long as the broker's temp dir


class KafkaError(RuntimeError):
    """The jars could not be fetched or the broker could not be run."""


class KafkaStartError(KafkaError):
    """The broker did not come up; the message includes the tail of its log."""


# --------------------------------------------------------------------------------------
# Jars
# --------------------------------------------------------------------------------------


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: this file) holding the pom."""
    here = (start or Path(__file__)).resolve()
    for candidate in (here, *here.parents):
        if (candidate / POM_RELATIVE).is_file():
            return candidate
    raise KafkaError(f"cannot find {POM_RELATIVE} in {here} or any parent directory")


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def _libs_complete(libs: Path, digest: str) -> bool:
    marker = libs / MARKER_NAME
    try:
        return marker.read_text().strip() == digest and any(libs.glob("kafka_2.13-*.jar"))
    except OSError:
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise jar downloads between processes (e.g. two test runs started at once)."""
    import fcntl  # POSIX only; imported here so the module still imports elsewhere

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_kafka_jars(repo_root: Path | None = None) -> Path:
    """Return the directory holding the broker jars, running Maven first if needed.

    Maven runs only when ``<repo>/.cache/kafka/libs`` is missing, incomplete (no marker), or
    was fetched for a different ``deploy/kafka/pom.xml`` (the marker records the pom's hash).
    The jars are copied into a scratch dir and renamed into place, so an interrupted download
    never leaves a half-filled ``libs`` behind.
    """
    root = Path(repo_root).resolve() if repo_root is not None else find_repo_root()
    pom = root / POM_RELATIVE
    if not pom.is_file():
        raise KafkaError(f"missing {pom}")
    cache = root / CACHE_RELATIVE
    libs = cache / "libs"
    digest = _pom_digest(pom)
    if _libs_complete(libs, digest):
        return libs

    with _file_lock(cache / ".lock"):
        if _libs_complete(libs, digest):  # another process fetched them meanwhile
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaError("Maven ('mvn') is not on PATH; it is needed to fetch the Kafka jars")
        scratch = cache / "libs.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={scratch}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(scratch.glob("kafka_2.13-*.jar")):
            output = (proc.stdout + proc.stderr).strip()[-4000:]
            raise KafkaError(
                f"fetching the Kafka jars failed (exit {proc.returncode}): {' '.join(cmd)}\n{output}"
            )
        (scratch / MARKER_NAME).write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        scratch.rename(libs)
    return libs


# --------------------------------------------------------------------------------------
# TLS material
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerTls:
    """PEM files of a broker's throwaway CA and of a client certificate it signed (for mTLS)."""

    ca_file: Path
    client_cert_file: Path
    client_key_file: Path
    client_key_password: str = field(repr=False)
    keystore_file: Path  # the broker's encrypted key + certificate chain (ssl.keystore.type=PEM)
    keystore_password: str = field(repr=False)


def _openssl(directory: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise KafkaError("'openssl' is not on PATH; it makes the TLS material of a secured broker")
    proc = subprocess.run(
        [openssl, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise KafkaError(f"openssl {args[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _signed_certificate(
    directory: Path, name: str, subject: str, extensions: str, key_password: str, cipher: Sequence[str]
) -> tuple[Path, Path]:
    """A key (PKCS#8, encrypted with ``key_password`` by ``cipher``, openssl pkcs8 options) and a
    certificate signed by ``ca.pem``."""
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        directory,
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.plain.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
    )
    _openssl(
        directory,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        _TLS_DAYS,
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
    )
    _openssl(
        directory,
        "pkcs8",
        "-topk8",
        *cipher,
        "-in",
        f"{name}.plain.key",
        "-out",
        f"{name}.key",
        "-passout",
        "env:TRACKPIPE_KEY_PASSWORD",
        env={"TRACKPIPE_KEY_PASSWORD": key_password},
    )
    (directory / f"{name}.plain.key").unlink()
    (directory / f"{name}.csr").unlink()
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_tls_material(directory: Path, hosts: Sequence[str]) -> BrokerTls:
    """A new CA, a broker certificate for ``hosts`` (IP addresses or names) and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        directory,
        "req",
        "-x509",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        _TLS_DAYS,
        "-sha256",
        "-subj",
        "/CN=trackpipe throwaway test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    sans = ",".join(
        f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in dict.fromkeys(hosts)
    )
    keystore_password, client_password = secrets.token_hex(16), secrets.token_hex(16)
    broker_cert, broker_key = _signed_certificate(
        directory,
        "broker",
        "/CN=localhost",
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        keystore_password,
        # the broker's PEM keystore reads PKCS#8 PBES1 only (Java's SecretKeyFactory knows no PBES2 name)
        ("-v1", "PBE-SHA1-3DES"),
    )
    client_cert, client_key = _signed_certificate(
        directory,
        "client",
        "/CN=trackpipe-client",
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        client_password,
        ("-v2", "aes-256-cbc"),
    )
    keystore = directory / "broker-keystore.pem"
    keystore.write_text(broker_key.read_text() + broker_cert.read_text() + (directory / "ca.pem").read_text())
    (directory / "ca.key").unlink()  # nothing can be signed with it any more
    return BrokerTls(
        ca_file=directory / "ca.pem",
        client_cert_file=client_cert,
        client_key_file=client_key,
        client_key_password=client_password,
        keystore_file=keystore,
        keystore_password=keystore_password,
    )


# --------------------------------------------------------------------------------------
# Broker
# --------------------------------------------------------------------------------------


def _random_cluster_id() -> str:
    """A Kafka-style cluster id: a random UUID, base64url without padding (22 chars)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # would be read as an option on the command line
            return cid


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def _metadata_probe(bootstrap: str, timeout_s: float) -> int:
    """Fetch cluster metadata with aiokafka; return the number of live brokers."""
    from aiokafka import AIOKafkaClient  # a project dependency; imported lazily

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        connections_max_idle_ms=60_000,
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return len(client.cluster.brokers())
    finally:
        await client.close()


def _probe_in_thread(bootstrap: str, timeout_s: float) -> tuple[int, BaseException | None]:
    """Run the async probe on a private loop, so it works whether or not a loop is running."""
    result: list[int] = [0]
    error: list[BaseException | None] = [None]

    def target() -> None:
        try:
            result[0] = asyncio.run(_metadata_probe(bootstrap, timeout_s))
        except BaseException as exc:
            error[0] = exc

    t = threading.Thread(target=target, name="kafka-ready-probe", daemon=True)
    t.start()
    t.join(timeout_s + 5)
    if t.is_alive():
        return 0, TimeoutError("metadata probe hung")
    return result[0], error[0]


_PR_SET_PDEATHSIG = 1


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` making the kernel SIGTERM the JVM if its parent dies.

    libc is looked up here, in the parent: after fork() in a threaded process the child
    must not dlopen() (malloc locks may be held), only make the prepared foreign call.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:  # pragma: no cover - runs in the forked child
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


_live_brokers: weakref.WeakSet[KafkaBroker] = weakref.WeakSet()


@atexit.register
def _stop_leftover_brokers() -> None:
    for broker in list(_live_brokers):
        with contextlib.suppress(Exception):
            broker.stop(timeout=10)


class KafkaBroker:
    """One Kafka broker+controller JVM in KRaft mode, listening on 127.0.0.1 only.

    >>> with KafkaBroker() as kafka:
    ...     print(kafka.bootstrap)  # "127.0.0.1:PORT"

    ``port``/``controller_port`` default to free ephemeral ports.  ``extra_properties``
    override or add ``server.properties`` entries.  ``secure`` names extra listeners of
    :data:`SECURE_LISTENERS` (module docstring); :meth:`bootstrap_for` gives their addresses,
    ``tls`` the CA and client certificate, ``scram_username``/``scram_password`` the SASL user.
    """

    def __init__(
        self,
        libs_dir: Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        host: str = "127.0.0.1",
        java: str = "java",
        jvm_opts: Sequence[str] = DEFAULT_JVM_OPTS,
        start_timeout: float = 120.0,
        stop_timeout: float = 20.0,
        extra_properties: Mapping[str, str] | None = None,
        secure: Sequence[str] = (),
        tls_client_auth: bool = True,
        scram_username: str = "trackpipe",
        storage_dir: Path | None = None,
    ) -> None:
        """``storage_dir``: keep the broker's storage (and log) there, formatted on the first start only
        and kept by :meth:`stop` (``trackpipe cluster up``); default: a temp dir removed by ``stop``."""
        unknown = sorted(set(secure) - set(SECURE_LISTENERS))
        if unknown:
            raise KafkaError(f"unknown listener(s) {unknown}; one of {', '.join(SECURE_LISTENERS)}")
        self.libs_dir = Path(libs_dir) if libs_dir is not None else None
        self.host = host
        self.java = java
        self.jvm_opts = tuple(jvm_opts)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.extra_properties = dict(extra_properties or {})
        self._want_port = port
        self._want_controller_port = controller_port
        self.port: int | None = None
        self.controller_port: int | None = None
        self.cluster_id: str | None = None
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.secure = tuple(dict.fromkeys(secure))
        self.tls_client_auth = tls_client_auth
        self.scram_username = scram_username
        self.storage_dir = Path(storage_dir) if storage_dir is not None else None
        self.scram_password: str | None = None  # random, set at start when a SASL listener is asked for
        self.tls: BrokerTls | None = None
        self.listener_ports: dict[str, int] = {}

    # ---- public API ------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        if self.port is None or not self.running:
            raise KafkaError("broker is not running")
        return f"{self.host}:{self.port}"

    def bootstrap_for(self, listener: str) -> str:
        """``host:port`` of the ``listener`` (``PLAINTEXT`` or one of ``secure``)."""
        if listener == "PLAINTEXT":
            return self.bootstrap
        if listener not in self.listener_ports or not self.running:
            raise KafkaError(f"broker has no running {listener} listener")
        return f"{self.host}:{self.listener_ports[listener]}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "broker.log" if self.workdir is not None else None

    def log_tail(self, lines: int = 60) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no broker log)"
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
        return "\n".join(data.splitlines()[-lines:])

    def log_errors(self, limit: int = 10) -> str:
        """The first ERROR/FATAL lines of the broker log (the tail often only shows shutdown)."""
        path = self.log_path
        if path is None or not path.exists():
            return ""
        hits: list[str] = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if " ERROR " in line or " FATAL " in line or line.startswith("Exception"):
                    hits.append(line.rstrip())
                    if len(hits) >= limit:
                        break
        return "\n".join(hits)

    def _failure_details(self) -> str:
        errors = self.log_errors()
        head = f"first errors:\n{errors}\n" if errors else ""
        return f"log {self.log_path}:\n{head}last lines:\n{self.log_tail()}"

    def start(self) -> KafkaBroker:
        """Format storage, launch the JVM and block until the broker serves metadata."""
        if self.process is not None:
            raise KafkaError("broker already started")
        if self.libs_dir is None:
            self.libs_dir = ensure_kafka_jars()
        if shutil.which(self.java) is None:
            raise KafkaError(f"'{self.java}' is not on PATH; a Java 17+ runtime is needed for Kafka")
        began = time.monotonic()
        # Auto-picked ports can be stolen between probing and the JVM binding them: retry.
        attempts = 1 if self._want_port and self._want_controller_port else 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                break
            except KafkaStartError as exc:
                bind_clash = "Address already in use" in str(exc)
                self.stop()
                if not bind_clash or attempt == attempts:
                    raise
        self.startup_seconds = time.monotonic() - began
        _live_brokers.add(self)
        return self

    def halt(self, timeout: float | None = None) -> None:
        """SIGTERM the JVM (SIGKILL after ``timeout``) but keep its storage, ports and cluster id, so
        :meth:`restart` can bring the same broker back (what a rolling restart does)."""
        timeout = self.stop_timeout if timeout is None else timeout
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def restart(self) -> KafkaBroker:
        """Start the JVM again on the storage and ports of the last :meth:`start` (halting it first if it
        still runs) and block until it serves metadata. ``startup_seconds`` is updated."""
        if self.workdir is None or self.port is None:
            raise KafkaError("broker was never started (or was stopped): nothing to restart")
        self.halt()
        began = time.monotonic()
        try:
            self._launch()
        except KafkaStartError:
            self.halt()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the JVM (SIGKILL after ``timeout``) and delete the temp directory (a ``storage_dir``
        is kept)."""
        self.halt(timeout)
        if self.workdir is not None:
            if self.storage_dir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.port = self.controller_port = None
        self.listener_ports = {}
        self.tls = None
        self.scram_password = None
        _live_brokers.discard(self)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"bootstrap={self.host}:{self.port}" if self.running else "stopped"
        return f"<KafkaBroker {state} pid={self.pid}>"

    # ---- internals -------------------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        assert self.workdir is not None and self.port and self.controller_port
        h = self.host
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A static voter set works with the 3.x and 4.x formatters alike and needs
            # no "--standalone" bootstrap of a dynamic quorum.
            "controller.quorum.voters": f"1@{h}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{h}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "metadata.log.dir": str(self.workdir / "meta"),
            # single node: every internal topic has one replica
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # let tests use short consumer session timeouts (broker default minimum: 6 s)
            "group.min.session.timeout.ms": "1000",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            # small files and few threads: this is a throwaway test broker
            "log.segment.bytes": str(8 * 1024 * 1024),
            "log.index.size.max.bytes": str(1024 * 1024),
            "log.retention.check.interval.ms": "60000",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.threads": "1",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "num.replica.fetchers": "1",
            "log.flush.interval.messages": str(2**62),
        }
        if self.secure:
            props.update(self._secure_properties())
        props.update(self.extra_properties)
        return props

    def _secure_properties(self) -> dict[str, str]:
        h, ports = self.host, self.listener_ports
        extra = [f"{name}://{h}:{ports[name]}" for name in self.secure]
        props = {
            "listeners": ",".join(
                [f"PLAINTEXT://{h}:{self.port}", *extra, f"CONTROLLER://{h}:{self.controller_port}"]
            ),
            "advertised.listeners": ",".join([f"PLAINTEXT://{h}:{self.port}", *extra]),
            "listener.security.protocol.map": ",".join(
                ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT", *(f"{n}:{n}" for n in self.secure)]
            ),
        }
        if self.tls is not None:
            props.update(
                {
                    "ssl.keystore.type": "PEM",
                    "ssl.keystore.location": str(self.tls.keystore_file),
                    "ssl.key.password": self.tls.keystore_password,
                    "ssl.truststore.type": "PEM",
                    "ssl.truststore.location": str(self.tls.ca_file),
                    "ssl.client.auth": "none",
                }
            )
            if "SSL" in self.secure and self.tls_client_auth:
                props["listener.name.ssl.ssl.client.auth"] = "required"
        sasl = [n for n in self.secure if n.startswith("SASL_")]
        if sasl:
            props["sasl.enabled.mechanisms"] = SCRAM_MECHANISM
            jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            for name in sasl:
                props[f"listener.name.{name.lower()}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config"] = jaas
        return props

    def _java_cmd(self, opts: Sequence[str], main: str, *args: str) -> list[str]:
        assert self.libs_dir is not None and self.workdir is not None
        return [
            self.java,
            *opts,
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs_dir}/*",
            main,
            *args,
        ]

    def _start_once(self) -> None:
        if self.storage_dir is not None:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
            self.workdir = self.storage_dir
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="trackpipe-kafka-"))
        if self._want_port and self._want_controller_port:
            self.port, self.controller_port = self._want_port, self._want_controller_port
        elif self._want_port:
            self.port = self._want_port
            self.controller_port = next(p for p in pick_free_ports(2, self.host) if p != self._want_port)
        else:
            self.port, self.controller_port = pick_free_ports(2, self.host)
        taken = {self.port, self.controller_port}
        spare = [p for p in pick_free_ports(len(self.secure) + 2, self.host) if p not in taken]
        self.listener_ports = dict(zip(self.secure, spare, strict=False))
        if any(n in ("SSL", "SASL_SSL") for n in self.secure):
            self.tls = make_tls_material(self.workdir / "tls", [self.host, "localhost"])
        format_extra: list[str] = []
        if any(n.startswith("SASL_") for n in self.secure):
            self.scram_password = secrets.token_hex(16)  # hex: nothing to quote in the --add-scram value
            scram = f"{SCRAM_MECHANISM}=[name={self.scram_username},password={self.scram_password}]"
            format_extra = ["--add-scram", scram]
        self.cluster_id = _random_cluster_id()

        props_path = self.workdir / "server.properties"
        props_path.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        (self.workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        log_path = self.workdir / "broker.log"
        if (self.workdir / "meta" / "meta.properties").exists():  # a kept storage: formatted already
            self._launch()
            return

        with open(log_path, "ab") as log:
            fmt = subprocess.run(
                self._java_cmd(
                    TOOL_JVM_OPTS,
                    STORAGE_TOOL_CLASS,
                    "format",
                    "-t",
                    self.cluster_id,
                    "-c",
                    str(props_path),
                    *format_extra,
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                timeout=120,
                check=False,
            )
        if fmt.returncode != 0:
            raise KafkaStartError(
                f"formatting Kafka storage failed (exit {fmt.returncode}); {self._failure_details()}"
            )

        self._launch()

    def _launch(self) -> None:
        """Run the broker JVM on the formatted storage in ``workdir`` and wait until it is ready."""
        assert self.workdir is not None
        props_path = self.workdir / "server.properties"
        log_path = self.workdir / "broker.log"
        in_main_thread = threading.current_thread() is threading.main_thread()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                self._java_cmd(self.jvm_opts, KAFKA_MAIN_CLASS, str(props_path)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                # own session: a Ctrl-C in the terminal reaches us, and we stop the JVM
                start_new_session=True,
                # PDEATHSIG fires when the *thread* that forked exits, so only use it from
                # the main thread (where it means "when this Python process dies").
                preexec_fn=_pdeathsig_preexec() if in_main_thread else None,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        bootstrap = f"{self.host}:{self.port}"
        last_error: BaseException | None = None
        while True:
            code = self.process.poll()
            if code is not None:
                raise KafkaStartError(
                    f"Kafka broker exited with code {code} during startup; {self._failure_details()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaStartError(
                    f"Kafka broker on {bootstrap} not ready after {self.start_timeout:.0f}s "
                    f"(last probe error: {last_error!r}); {self._failure_details()}"
                )
            if _port_open(self.host, self.port):
                brokers, last_error = _probe_in_thread(bootstrap, min(10.0, max(1.0, remaining)))
                if last_error is None and brokers >= 1:
                    return
            time.sleep(0.25)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def client_settings(broker: KafkaBroker, listener: str) -> dict[str, str]:
    """The TRACKPIPE_KAFKA_* variables of a trackpipe process using ``listener`` of ``broker`` (SSL: with
    the client certificate)."""
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": broker.bootstrap_for(listener),
        "TRACKPIPE_KAFKA_SECURITY_PROTOCOL": listener,
    }
    if broker.tls is not None and listener in ("SSL", "SASL_SSL"):
        env["TRACKPIPE_KAFKA_SSL_CAFILE"] = str(broker.tls.ca_file)
    if broker.tls is not None and listener == "SSL":
        env["TRACKPIPE_KAFKA_SSL_CERTFILE"] = str(broker.tls.client_cert_file)
        env["TRACKPIPE_KAFKA_SSL_KEYFILE"] = str(broker.tls.client_key_file)
        env["TRACKPIPE_KAFKA_SSL_KEY_PASSWORD"] = broker.tls.client_key_password
    if listener.startswith("SASL_") and broker.scram_password is not None:
        env["TRACKPIPE_KAFKA_SASL_MECHANISM"] = SCRAM_MECHANISM
        env["TRACKPIPE_KAFKA_SASL_USERNAME"] = broker.scram_username
        env["TRACKPIPE_KAFKA_SASL_PASSWORD"] = broker.scram_password
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trackpipe.devservers.kafka",
        description="Run a single-node Kafka (KRaft) broker on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    parser.add_argument("--controller-port", type=int, default=None, help="KRaft controller port")
    parser.add_argument("--timeout", type=float, default=120.0, help="startup timeout, seconds")
    parser.add_argument(
        "--secure",
        action="append",
        choices=SECURE_LISTENERS,
        default=[],
        help="also open this listener (repeatable); its TRACKPIPE_KAFKA_* settings are printed",
    )
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # even when started with SIGINT ignored (e.g. "&" in a script), Ctrl-C / kill -INT stops it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    broker = KafkaBroker(
        port=args.port, controller_port=args.controller_port, start_timeout=args.timeout, secure=args.secure
    )
    try:
        t0 = time.monotonic()
        libs = ensure_kafka_jars()
        print(f"Kafka jars: {libs} ({time.monotonic() - t0:.1f}s)", flush=True)
        broker.libs_dir = libs
        broker.start()
        print(f"Kafka broker log: {broker.log_path}", flush=True)
        print(f"Kafka ready in {broker.startup_seconds:.1f}s (pid {broker.pid}); Ctrl-C to stop", flush=True)
        print(f"KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        for listener in broker.secure:
            print(f"{listener} (a throwaway CA and password, valid while this broker runs):", flush=True)
            print(
                "  " + " ".join(f"{k}={v}" for k, v in client_settings(broker, listener).items()), flush=True
            )
        assert broker.process is not None
        while broker.process.poll() is None:
            time.sleep(0.5)
        print(f"Kafka broker exited with code {broker.process.returncode}:\n{broker.log_tail()}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("stopping Kafka ...", flush=True)
        return 0
    except KafkaError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
