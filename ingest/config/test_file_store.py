import os
from datetime import UTC, datetime

import pytest

from ingest.config.file_store import FileConfigStore
from schemas.alerts import AlertKind
from schemas.config import (
    ConfigRecord,
    ConfigStoreError,
    Goal,
    StoredAlertRule,
    alert_key,
    alert_record,
    goal_key,
    goal_record,
    signing_key_records,
)
from schemas.outbound.signing import KeyRing, generate_secret

NOW = datetime(2026, 1, 21, tzinfo=UTC)


def append(path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def named(store: FileConfigStore, goal_id: str) -> str | None:
    found = store.state.goal(goal_id)
    return found.name if found is not None else None


def exists(path) -> bool:
    return os.path.exists(path)


def goal(i: int, name: str = "G") -> Goal:
    return Goal(id=f"g{i}", project="p", name=name, token=f"token-{i}", created_at=NOW, updated_at=NOW)


async def test_writes_are_durable_and_replayed(tmp_path):
    store = FileConfigStore(tmp_path / "config.log")
    await store.start()
    await store.write([goal_record(goal(1)), goal_record(goal(2))])
    await store.write([goal_record(goal(1, "renamed")), ConfigRecord(goal_key("g2"), None)])
    assert named(store, "g1") == "renamed" and store.state.goal("g2") is None
    await store.stop()
    again = FileConfigStore(tmp_path / "config.log")
    await again.start()
    assert named(again, "g1") == "renamed" and again.state.goal_by_token("token-2") is None
    await again.stop()


async def test_torn_tail_is_cut_and_garbage_stops_the_start(tmp_path):
    path = tmp_path / "config.log"
    store = FileConfigStore(path)
    await store.start()
    await store.write([goal_record(goal(1))])
    await store.stop()
    append(path, b'{"k":"goal/g9","v":{"ki')  # crash mid-append: never acknowledged
    again = FileConfigStore(path)
    await again.start()
    assert again.state.goal("g1") is not None and again.state.goal("g9") is None
    await again.stop()
    assert path.read_bytes().endswith(b"}\n")
    append(path, b"not json\n")
    with pytest.raises(ConfigStoreError, match="line 2"):
        await FileConfigStore(path).start()


async def test_compaction_keeps_the_latest(tmp_path):
    path = tmp_path / "config.log"
    store = FileConfigStore(path)
    await store.start()
    for i in range(150):
        await store.write([goal_record(goal(1, f"v{i}"))])
    await store.stop()
    again = FileConfigStore(path)
    await again.start()
    assert named(again, "g1") == "v149"
    assert path.read_bytes().count(b"\n") == 1 and not exists(path.with_suffix(".compact"))
    await again.stop()


async def test_unreadable_records_are_never_written(tmp_path):
    store = FileConfigStore(tmp_path / "config.log")
    await store.start()
    with pytest.raises(ConfigStoreError, match="unreadable"):
        await store.write([ConfigRecord("goal/x", b"{}")])
    assert (tmp_path / "config.log").read_bytes() == b""
    await store.stop()


def rule(i: int, name: str = "R") -> StoredAlertRule:
    return StoredAlertRule(
        id=f"a{i}",
        project="p",
        name=name,
        kind=AlertKind.SPIKE,
        min_count=5,
        factor=3,
        created_at=NOW,
        updated_at=NOW,
        signing_keys=signing_key_records(KeyRing.new(generate_secret(), NOW)),
    )


async def test_alert_rules_are_stored_beside_goals(tmp_path):
    store = FileConfigStore(tmp_path / "config.log")
    await store.start()
    await store.write([alert_record(rule(1)), alert_record(rule(2)), goal_record(goal(1))])
    await store.write([alert_record(rule(1, "renamed")), ConfigRecord(alert_key("a2"), None)])
    await store.stop()
    again = FileConfigStore(tmp_path / "config.log")
    await again.start()
    found = again.state.alert("a1")
    assert found is not None and found.name == "renamed" and found.kind is AlertKind.SPIKE
    assert found.key_ring() is not None and again.state.alert("a2") is None
    assert [r.id for r in again.state.alerts("p")] == ["a1"] and named(again, "g1") == "G"
    await again.stop()


async def test_a_later_versions_kind_is_skipped_and_kept_by_compaction(tmp_path):
    path = tmp_path / "config.log"
    append(path, b'{"k":"report/r1","v":{"kind":"report","v":1,"data":{}}}\n')
    store = FileConfigStore(path)
    await store.start()  # not refused: skipped, counted
    assert store.state.unknown_records == 1 and len(store.state) == 0
    for i in range(150):
        await store.write([goal_record(goal(1, f"v{i}"))])
    await store.stop()
    again = FileConfigStore(path)
    await again.start()  # compacts
    assert named(again, "g1") == "v149" and again.state.unknown_records == 1
    assert path.read_bytes().count(b"\n") == 2 and b"report/r1" in path.read_bytes()
    await again.stop()
