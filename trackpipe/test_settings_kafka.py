"""Kafka security settings: the combinations refused at start-up (each naming its variable), the aiokafka
options (TLS context, SASL) and Faust's broker credentials. PEM files from a throwaway CA (openssl)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import ValidationError

from trackpipe.devservers.kafka import BrokerTls, make_tls_material
from trackpipe.settings import Settings


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> BrokerTls:
    return make_tls_material(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"])


def settings(**kw: Any) -> Settings:
    return Settings(**kw)


def refused(field: str, **kw: Any) -> str:
    """The error message of ``field`` when ``kw`` are refused (and only that field's)."""
    with pytest.raises(ValidationError) as info:
        Settings(**kw)
    errors = info.value.errors(include_url=False, include_input=False)
    assert [e["loc"] for e in errors] == [(field,)], errors
    return str(errors[0]["msg"])


def sasl(**kw: Any) -> dict[str, Any]:
    base = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "svc",
        "kafka_sasl_password": "pw-123",
    }
    return {**base, **kw}


def test_plaintext_by_default() -> None:
    s = settings()
    assert s.kafka_security() == {"security_protocol": "PLAINTEXT"}
    assert s.kafka_broker_credentials() is None


def test_refused_combinations_name_their_variable(tls: BrokerTls, tmp_path: Path) -> None:
    assert "one of PLAINTEXT" in refused("kafka_security_protocol", kafka_security_protocol="TLS")
    msg = refused("kafka_sasl_mechanism", kafka_security_protocol="SASL_SSL")
    assert "required with TRACKPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in msg
    msg = refused("kafka_sasl_mechanism", kafka_sasl_mechanism="PLAIN")
    assert "PLAINTEXT does not use SASL" in msg
    assert "unsupported SASL mechanism 'GSSAPI'" in refused(
        "kafka_sasl_mechanism", **sasl(kafka_sasl_mechanism="GSSAPI")
    )
    assert "required with" in refused("kafka_sasl_username", **sasl(kafka_sasl_username=None))
    assert "required with" in refused("kafka_sasl_password", **sasl(kafka_sasl_password=""))
    assert "does not use SASL" in refused("kafka_sasl_username", kafka_sasl_username="svc")

    missing = tmp_path / "missing-ca.pem"
    assert f"no such file: {missing}" in refused("kafka_ssl_cafile", **sasl(kafka_ssl_cafile=missing))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    assert "no usable PEM CA" in refused("kafka_ssl_cafile", **sasl(kafka_ssl_cafile=not_pem))
    msg = refused("kafka_ssl_cafile", kafka_ssl_cafile=tls.ca_file)
    assert "PLAINTEXT does not use TLS" in msg
    msg = refused("kafka_ssl_keyfile", kafka_security_protocol="SSL", kafka_ssl_keyfile=tls.client_key_file)
    assert "without TRACKPIPE_KAFKA_SSL_CERTFILE" in msg

    client = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": tls.ca_file,
        "kafka_ssl_certfile": tls.client_cert_file,
        "kafka_ssl_keyfile": tls.client_key_file,
    }
    msg = refused("kafka_ssl_keyfile", **client, kafka_ssl_key_password="wrong-password")
    assert "cannot load the client certificate TRACKPIPE_KAFKA_SSL_CERTFILE" in msg
    assert "TRACKPIPE_KAFKA_SSL_KEY_PASSWORD" in msg and "wrong-password" not in msg
    # an encrypted key without its password: refused, never an interactive prompt
    assert "cannot load" in refused("kafka_ssl_keyfile", **client)


def test_errors_never_show_a_password() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**sasl(kafka_sasl_mechanism="NOPE", kafka_sasl_password="s3cret-value"))
    assert "s3cret-value" not in str(info.value)


def test_tls_with_a_client_certificate(tls: BrokerTls) -> None:
    s = settings(
        kafka_security_protocol="ssl",
        kafka_ssl_cafile=tls.ca_file,
        kafka_ssl_certfile=tls.client_cert_file,
        kafka_ssl_keyfile=tls.client_key_file,
        kafka_ssl_key_password=tls.client_key_password,
    )
    opts = s.kafka_security()
    assert opts.keys() == {"security_protocol", "ssl_context"} and opts["security_protocol"] == "SSL"
    context = opts["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "trackpipe throwaway test CA" in repr(context.get_ca_certs())  # the CA file's, not the system's
    assert len(context.get_ca_certs()) == 1
    credentials = s.kafka_broker_credentials()
    assert isinstance(credentials, SSLCredentials) and credentials.context.check_hostname
    assert (
        s.kafka_security() is not opts and s.kafka_security()["ssl_context"] is not context
    )  # one per client


def test_hostname_check_can_be_turned_off(tls: BrokerTls) -> None:
    s = settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tls.ca_file, kafka_ssl_check_hostname=False)
    context = s.kafka_security()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_ssl_and_sasl_plaintext(tls: BrokerTls) -> None:
    s = settings(**sasl(kafka_ssl_cafile=tls.ca_file, kafka_sasl_mechanism="scram-sha-256"))
    opts = s.kafka_security()
    assert isinstance(opts.pop("ssl_context"), ssl.SSLContext)
    assert opts == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw-123",
    }
    credentials = s.kafka_broker_credentials()
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol == AuthProtocol.SASL_SSL
    assert credentials.mechanism == SASLMechanism.SCRAM_SHA_256
    assert (credentials.username, credentials.password) == ("svc", "pw-123")
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert "pw-123" not in s.kafka_security_summary() and "SCRAM-SHA-256" in s.kafka_security_summary()

    plain = settings(**sasl(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN"))
    assert "ssl_context" not in plain.kafka_security()
    credentials = plain.kafka_broker_credentials()
    assert isinstance(credentials, SASLCredentials) and credentials.ssl_context is None
    assert (
        credentials.protocol == AuthProtocol.SASL_PLAINTEXT and credentials.mechanism == SASLMechanism.PLAIN
    )
