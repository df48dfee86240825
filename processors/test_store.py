"""StagedStore: state objects staged in a batch are decoded once, encoded once, and only on commit."""

from __future__ import annotations

from processors.stage import load_with, save_with
from processors.store import DictStore, StagedStore, expired_keys, pack, unpack


def test_a_staged_object_is_handed_back_and_encoded_once_at_commit():
    backing = DictStore()
    backing.put("k", pack(5, b"old"))
    store = StagedStore(backing)
    decoded: list[bytes] = []
    encoded: list[str] = []

    def decode(raw: bytes) -> list[str]:
        decoded.append(raw)
        return [raw.decode()]

    def encode(state: list[str]) -> bytes:
        encoded.append(",".join(state))
        return ",".join(state).encode()

    state = load_with(store, "k", decode)
    assert state == ["old"] and decoded == [b"old"]
    state.append("a")
    save_with(store, "k", state, encode, 10)
    again = load_with(store, "k", decode)
    assert again is state and decoded == [b"old"]  # not decoded again within the batch
    again.append("b")
    save_with(store, "k", again, encode, 20)
    assert encoded == [] and backing.get("k") == pack(5, b"old")  # nothing written before commit
    assert store.get("k") == pack(20, b"old,a,b")  # bytes on demand (the expiry of the last save)
    assert store.commit() == 1
    assert backing.get("k") == pack(20, b"old,a,b") and store.get_object("k") is None


def test_discard_delete_and_items_see_staged_objects():
    backing = DictStore()
    store = StagedStore(backing)
    save_with(store, "a", ["x"], lambda _: b"x", 1)
    save_with(store, "b", ["y"], lambda _: b"y", 100)
    store.put("c", pack(1, b"z"))
    assert dict(store.items()) == {"a": pack(1, b"x"), "b": pack(100, b"y"), "c": pack(1, b"z")}
    assert sorted(expired_keys(store, 50)) == ["a", "c"]
    store.delete("a")
    assert store.get("a") is None and store.get_object("a") is None
    store.discard()
    assert store.get("b") is None and store.commit() == 0 and backing.data == {}
    save_with(store, "b", ["y"], lambda _: b"y", 100)
    store.put("b", pack(7, b"bytes win"))  # a later plain put replaces the staged object
    store.commit()
    assert unpack(backing.data["b"]) == (7, b"bytes win")


def test_plain_stores_get_bytes_at_once():
    store = DictStore()
    save_with(store, "k", {"n": 1}, lambda _: b'{"n":1}', 3)
    assert store.get("k") == pack(3, b'{"n":1}')
    assert load_with(store, "k", lambda raw: raw) == b'{"n":1}'
