"""``python -m tests.rescale_hold N``: ``trackpipe ops rescale --partitions N`` that stops itself (SIGSTOP)
once the first stage's state is durable in the target generation — the layout then says *moving* and the
move is half done — so the rescale-fault test kills it there (Rescaler's ``checkpoint`` test seam)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from trackpipe.cli import _settings
from trackpipe.ops.rescale import Rescaler


def _hold(point: str) -> None:
    print(f"held after: {point}", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)


def main() -> None:
    rescaler = Rescaler(_settings(), say=lambda line: print(line, flush=True), checkpoint=_hold)
    asyncio.run(rescaler.rescale(int(sys.argv[1])))


if __name__ == "__main__":
    main()
