import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.outbound.signing import (
    HEADER_SIGNATURE,
    KeyRing,
    SecretError,
    VerificationError,
    VerifyFailure,
    WebhookSecret,
    generate_secret,
    parse_secret,
    sign,
    signed_headers,
    verify,
)

# The vector published with the Standard Webhooks reference libraries (tests of the Python library).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def fixed_bytes(seed: int):
    rng = Random(seed)
    return lambda n: bytes(rng.getrandbits(8) for _ in range(n))


def test_matches_the_published_vector() -> None:
    secret = parse_secret(VECTOR_SECRET)
    assert sign(VECTOR_ID, VECTOR_TS, VECTOR_BODY, [secret]) == VECTOR_SIGNATURE
    headers = signed_headers(VECTOR_ID, VECTOR_TS, VECTOR_BODY, [secret])
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verify(VECTOR_BODY, headers, secret, now=VECTOR_TS + 10) == VECTOR_ID


def test_signature_is_hmac_sha256_of_id_timestamp_body_with_the_decoded_secret() -> None:
    secret = generate_secret(fixed_bytes(1))
    body = b'{"event":"conversion.tracked"}'
    mac = hmac.new(secret.key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert sign("msg_1", 1700000000, body, [secret]) == "v1," + base64.b64encode(mac).decode()


def test_generated_secret_round_trips_and_is_never_shown_by_repr() -> None:
    secret = generate_secret(fixed_bytes(2))
    assert secret.text.startswith("whsec_")
    assert len(secret.key) == 32
    assert parse_secret(secret.text) == secret
    assert secret.text not in repr(secret) and secret.text not in str(secret)
    assert generate_secret(fixed_bytes(3), 24).key != generate_secret(fixed_bytes(4), 24).key


@pytest.mark.parametrize(
    "text",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),  # too short
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # too long
        "whsec_",
    ],
)
def test_bad_secrets_are_refused(text: str) -> None:
    with pytest.raises(SecretError) as info:
        parse_secret(text)
    assert info.value.retriable is False


def test_a_receiver_may_pass_the_bare_base64_part() -> None:
    assert parse_secret(VECTOR_SECRET[6:], require_prefix=False) == parse_secret(VECTOR_SECRET)


@pytest.mark.parametrize("msg_id", ["", "a.b", "a b", "a\nb", "é", "x" * 257])
def test_message_ids_that_would_break_the_signed_content_are_refused(msg_id: str) -> None:
    with pytest.raises(ValueError):
        sign(msg_id, 1, b"", [generate_secret(fixed_bytes(5))])


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        sign("msg", 1, b"", [])


def _headers(body: bytes, ts: int, *secrets: WebhookSecret) -> dict[str, str]:
    return signed_headers("msg_x", ts, body, list(secrets))


def failure(body: bytes, headers: dict[str, str], secret: WebhookSecret, now: int) -> VerifyFailure:
    with pytest.raises(VerificationError) as info:
        verify(body, headers, secret, now=now)
    assert info.value.retriable is False
    return info.value.reason


def test_verifier_refuses_tampering_wrong_secret_and_missing_headers() -> None:
    a, b = generate_secret(fixed_bytes(6)), generate_secret(fixed_bytes(7))
    h = _headers(b"{}", 1000, a)
    assert failure(b"{ }", h, a, 1000) is VerifyFailure.NO_MATCHING_SIGNATURE
    assert failure(b"{}", h, b, 1000) is VerifyFailure.NO_MATCHING_SIGNATURE
    assert failure(b"{}", {**h, "webhook-id": "msg_y"}, a, 1000) is VerifyFailure.NO_MATCHING_SIGNATURE
    for name in h:
        partial = {k: v for k, v in h.items() if k != name}
        assert failure(b"{}", partial, a, 1000) is VerifyFailure.MISSING_HEADER
    assert failure(b"{}", {**h, "webhook-timestamp": "12a"}, a, 1000) is VerifyFailure.BAD_TIMESTAMP
    assert failure(b"{}", {**h, "webhook-timestamp": "-5"}, a, 1000) is VerifyFailure.BAD_TIMESTAMP
    garbage = {**h, HEADER_SIGNATURE: "v1,@@@ v2," + h[HEADER_SIGNATURE][3:]}
    assert failure(b"{}", garbage, a, 1000) is VerifyFailure.NO_MATCHING_SIGNATURE


def test_verifier_enforces_the_timestamp_tolerance_both_ways() -> None:
    a = generate_secret(fixed_bytes(8))
    h = _headers(b"{}", 10_000, a)
    assert verify(b"{}", h, a, now=10_300) == "msg_x"
    assert verify(b"{}", h, a, now=9_700) == "msg_x"
    assert failure(b"{}", h, a, 10_301) is VerifyFailure.TIMESTAMP_TOO_OLD
    assert failure(b"{}", h, a, 9_699) is VerifyFailure.TIMESTAMP_TOO_NEW


def test_header_names_are_case_insensitive_and_any_entry_may_match() -> None:
    a, b = generate_secret(fixed_bytes(9)), generate_secret(fixed_bytes(10))
    h = {k.upper(): v for k, v in _headers(b"{}", 50, b, a).items()}
    assert verify(b"{}", h, a, now=50) == "msg_x"
    assert verify(b"{}", h, [generate_secret(fixed_bytes(11)), b], now=50) == "msg_x"


def test_rotation_signs_with_old_and_new_secret_during_the_grace_period_only() -> None:
    old, new, newer = (generate_secret(fixed_bytes(i)) for i in (12, 13, 14))
    ring = KeyRing.new(old, T0).rotate(new, T0 + timedelta(days=1), timedelta(hours=24))
    assert ring.current == new
    during = T0 + timedelta(days=1, hours=23)
    assert ring.signing_secrets(during) == (new, old)
    assert ring.signing_secrets(T0 + timedelta(days=2)) == (new,)
    # both entries are in one header; a receiver with either secret accepts
    ts = int(during.timestamp())
    h = signed_headers("msg_r", ts, b"body", ring.signing_secrets(during))
    assert len(h[HEADER_SIGNATURE].split(" ")) == 2
    assert verify(b"body", h, old, now=ts) == verify(b"body", h, new, now=ts) == "msg_r"
    # a second rotation after the grace period drops the expired secret
    later = ring.rotate(newer, T0 + timedelta(days=3), timedelta(hours=1))
    assert [k.secret for k in later.keys] == [newer, new]
    # grace zero retires at once
    assert KeyRing.new(old, T0).rotate(new, T0, timedelta(0)).signing_secrets(T0) == (new,)
    with pytest.raises(ValueError):
        ring.rotate(newer, T0, timedelta(seconds=-1))


@given(
    body=st.binary(max_size=512),
    ts=st.integers(min_value=0, max_value=10**12 - 1),
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40),
)
def test_whatever_we_sign_verifies_and_any_changed_byte_does_not(
    body: bytes, ts: int, key: bytes, msg_id: str
) -> None:
    secret = WebhookSecret(key)
    h = signed_headers(msg_id, ts, body, [secret])
    assert verify(body, h, secret, now=ts) == msg_id
    with pytest.raises(VerificationError):
        verify(body + b"x", h, secret, now=ts)


# What the README's receiver shows: the standard library only, no trackpipe import.
def receiver_verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    import base64 as b64
    import hashlib as hl
    import hmac as hm

    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and sigs and ts.isdigit()) or abs(now - int(ts)) > 300:
        return False
    key = b64.b64decode(secret.removeprefix("whsec_"))
    mac = hm.new(key, f"{msg_id}.{ts}.".encode() + body, hl.sha256).digest()
    expected = "v1," + b64.b64encode(mac).decode()
    return any(hm.compare_digest(expected, s) for s in sigs.split(" "))


def test_a_stdlib_only_receiver_accepts_what_we_send_and_refuses_tampering() -> None:
    secret = generate_secret(fixed_bytes(20))
    h = signed_headers("msg_readme", 1_800_000_000, b'{"event":"conversion.tracked"}', [secret])
    assert receiver_verify(secret.text, h, b'{"event":"conversion.tracked"}', 1_800_000_100)
    assert not receiver_verify(secret.text, h, b'{"event":"conversion.updated"}', 1_800_000_100)
    assert not receiver_verify(secret.text, h, b'{"event":"conversion.tracked"}', 1_800_001_000)
    assert receiver_verify(
        VECTOR_SECRET,
        {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIGNATURE},
        VECTOR_BODY,
        VECTOR_TS,
    )
