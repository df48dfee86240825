"""A worker restarts itself into the live generation (docs/rescaling.md).

:class:`LayoutWatch` follows the layout topic beside the Faust app; when a rescale cuts over (the layout
is stable again with another current generation) it stops the worker as a SIGTERM would — the batch
protocol finishes or abandons the batch in hand, nothing is acknowledged that is not done — and
``run_worker`` then re-executes the process, which starts on the new generation's topics.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from mode import Service

from trackpipe.ops.follow import LayoutFollower
from trackpipe.ops.layout import Layout, Phase

log = logging.getLogger(__name__)


class LayoutWatch(Service):
    def __init__(self, bootstrap: str, topic: str, running: int, *, security: dict[str, object]):
        super().__init__()
        self.running = running
        self.restart_wanted = False
        self.follower = LayoutFollower(bootstrap, topic, security=security, on_change=self._changed)

    async def on_start(self) -> None:
        layout = await self.follower.start()
        if layout is not None:
            await self._changed(layout)

    async def _changed(self, layout: Layout) -> None:
        if (
            layout.phase == Phase.STABLE
            and layout.current.generation != self.running
            and not self.restart_wanted
        ):
            self.restart_wanted = True
            log.warning(
                "layout: the pipeline moved to generation %d (%d partitions); restarting into it",
                layout.current.generation,
                layout.current.partitions,
            )
            os.kill(os.getpid(), signal.SIGTERM)

    async def on_stop(self) -> None:
        await self.follower.close()


def restart_process() -> None:
    """Replace this process by a fresh ``trackpipe worker`` (same pid, same environment)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "trackpipe.cli", "worker"])  # noqa: S606
