"""The outbound planner's digest stores: RocksDB answers exactly what the heap store answers."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from trackpipe.outbound.digest_store import MemoryDigests, RocksDigests, digest_store

keys = st.sampled_from(
    ["d\x1fp1\x1fg1\x1fk1", "s\x1fp1\x1fg1\x1fk1", "f\x1fp2\x1fg\x1fk\x1fl", "d\x1fé\x1fg\x1fk"]
)
partitions = st.integers(min_value=0, max_value=3)
values = st.binary(min_size=1, max_size=40)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), partitions, keys, st.one_of(st.none(), values)),
        st.tuples(st.just("put"), partitions, st.dictionaries(keys, values, max_size=3)),
        st.tuples(st.just("reset"), partitions),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_rocksdb_digests_answer_as_the_heap_does(tmp_path_factory, ops) -> None:
    rocks = RocksDigests(tmp_path_factory.mktemp("digests") / "outbound-state")
    heap = MemoryDigests()
    try:
        for op in ops:
            for store in (rocks, heap):
                if op[0] == "apply":
                    store.apply(op[1], op[2], op[3])
                elif op[0] == "put":
                    store.put_many(op[1], op[2])
                else:
                    store.reset(op[1])
            for p in range(5):
                wanted = [
                    "d\x1fp1\x1fg1\x1fk1",
                    "s\x1fp1\x1fg1\x1fk1",
                    "f\x1fp2\x1fg\x1fk\x1fl",
                    "d\x1fé\x1fg\x1fk",
                    "x",
                ]
                assert rocks.get_many(p, wanted) == heap.get_many(p, wanted)
    finally:
        rocks.close()


def test_a_partition_reset_leaves_the_others(tmp_path: Path) -> None:
    store = RocksDigests(tmp_path / "outbound-state")
    store.put_many(1, {"a": b"1", "b": b"2"})
    store.put_many(2, {"a": b"3"})
    store.put_many(255, {"a": b"4"})
    store.put_many(256, {"a": b"5"})
    store.reset(1)
    store.reset(255)
    assert store.get_many(1, ["a", "b"]) == {}
    assert store.get_many(2, ["a", "b"]) == {"a": b"3"}
    assert store.get_many(256, ["a"]) == {"a": b"5"}
    store.close()


def test_a_restarted_worker_starts_from_an_empty_database(tmp_path: Path) -> None:
    """The database caches the state topic; what a previous process wrote is never read back."""
    first = RocksDigests(tmp_path / "outbound-state")
    first.put_many(0, {"a": b"stale"})
    first.close()
    second = RocksDigests(tmp_path / "outbound-state")
    assert second.get_many(0, ["a"]) == {}
    second.close()


def test_the_worker_store_chooses_where_digests_live(tmp_path: Path) -> None:
    rocks = digest_store("rocksdb://", tmp_path)
    assert isinstance(rocks, RocksDigests) and (tmp_path / "outbound-state").is_dir()
    rocks.close()
    assert isinstance(digest_store("memory://", tmp_path), MemoryDigests)
