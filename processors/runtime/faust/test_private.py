"""Fails loudly when faust-streaming changes under the private members processors.runtime.faust.private
uses: re-check each item listed there against the new version, then update CHECKED_FAUST_VERSION."""

from importlib.metadata import version

from faust.stores.rocksdb import Store as RocksDBStore
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as aiokafka_driver

from processors.runtime.faust.consumer import GaplessConsumer
from processors.runtime.faust.private import CHECKED_FAUST_VERSION


def test_the_installed_faust_streaming_is_the_one_the_private_accesses_were_checked_against():
    assert version("faust-streaming") == CHECKED_FAUST_VERSION, (
        "faust-streaming changed: re-check processors/runtime/faust/private.py against it"
    )


def test_the_private_methods_used_exist():
    for cls, name in [
        (FaustConsumer, "_new_offset"),
        (aiokafka_driver.Consumer, "_get_active_partitions"),
        (RocksDBStore, "_db_for_partition"),
    ]:
        assert callable(getattr(cls, name, None)), f"{cls.__qualname__}.{name} is gone"
    # our override still replaces the method Faust calls to decide what to commit
    assert GaplessConsumer._new_offset is not aiokafka_driver.Consumer._new_offset
