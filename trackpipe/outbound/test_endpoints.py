"""The endpoint circuit's book: failures counted per endpoint, disabling, re-enabling, and its state saved
in (and loaded from) the embedded state database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sinks.outbound.schedule import Circuit, Classified, DisableReason, Endpoint, FailureReason, Outcome
from trackpipe.outbound.endpoints import EndpointBook, endpoint_key
from trackpipe.outbound.sqlite_store import SqliteDueStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAIL = Classified(Outcome.FAILURE, FailureReason.SERVER_ERROR)
OK = Classified(Outcome.SUCCESS, None)
GONE = Classified(Outcome.GONE, FailureReason.GONE)


def test_keys_name_the_configured_destination() -> None:
    assert endpoint_key("conversion.tracked", "g1", "L1") == "goal:g1"
    assert endpoint_key("postback", "g1", "L1") == "link:L1"


async def test_failures_disable_success_clears_and_state_survives_a_restart(tmp_path: Path) -> None:
    store = SqliteDueStore(tmp_path / "state.sqlite")
    await store.open()
    try:
        book = EndpointBook(Circuit(threshold=3), store)
        await book.load()
        for i in range(2):
            await book.record("goal:a", FAIL, T0 + timedelta(seconds=i))
        await book.record("goal:b", FAIL, T0)
        await book.record("goal:b", OK, T0)  # a success starts a clean streak
        assert not book.disabled("goal:a") and set(book.states()) == {"goal:a"}
        await book.record("goal:a", FAIL, T0 + timedelta(seconds=2))
        assert book.disabled("goal:a") and book.get("goal:a").disabled_reason is DisableReason.FAILING
        await book.record("link:c", GONE, T0)
        assert book.disabled("link:c")

        again = EndpointBook(Circuit(threshold=3), store)  # a restart
        await again.load()
        assert again.states() == book.states()
        assert again.get("goal:a").failures[-1] == T0 + timedelta(seconds=2)

        assert await again.reenable("goal:a") and not again.disabled("goal:a")
        assert not await again.reenable("goal:a")  # clean already
        third = EndpointBook(Circuit(threshold=3), store)
        await third.load()
        assert set(third.states()) == {"link:c"}
    finally:
        await store.close()


async def test_without_a_store_the_circuit_lives_in_memory() -> None:
    book = EndpointBook(Circuit(threshold=1), object())
    await book.load()
    await book.record("goal:x", FAIL, T0)
    assert book.disabled("goal:x") and book.states()["goal:x"] != Endpoint()


async def test_only_deliveries_that_die_count_as_failures() -> None:
    from sinks.outbound.schedule import Delivery, DeliveryStatus
    from sinks.outbound.sender import AttemptResult

    book = EndpointBook(Circuit(threshold=2), None)
    retried = Delivery(DeliveryStatus.FAILED, T0, 1, 1)
    dead = Delivery(DeliveryStatus.DEAD, None, 2, 2)
    for i in range(20):  # a receiver down, many deliveries retrying: never disabled by the retries
        await book.after_attempt("goal:a", retried, AttemptResult(FAIL), T0 + timedelta(seconds=i))
    assert book.states() == {}
    await book.after_attempt("goal:a", dead, AttemptResult(FAIL), T0)
    await book.after_attempt("goal:a", dead, AttemptResult(FAIL), T0)
    assert book.disabled("goal:a")
    await book.after_attempt("goal:b", dead, AttemptResult(FAIL), T0)
    delivered = Delivery(DeliveryStatus.DELIVERED, None, 1, 1)
    await book.after_attempt("goal:b", delivered, AttemptResult(OK), T0)
    assert "goal:b" not in book.states()
    await book.after_attempt("goal:c", Delivery(DeliveryStatus.DEAD, None, 1, 1), AttemptResult(GONE), T0)
    assert book.disabled("goal:c")
