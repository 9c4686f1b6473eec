"""A sart `Speaker` running inside a network namespace, on a thread of this process.

Linux network namespaces belong to threads: a thread that calls setns(2) opens its sockets in
that namespace while the rest of the process stays where it was. So a test can put the real
speaker (the library, not a copy) into the lab next to FRR, BIRD and GoBGP, and still read its
RIB and drive it directly. `call` runs a function on the speaker's event loop and returns its
result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Self, TypeVar

from sart.bgp.config import SpeakerConfig
from sart.bgp.fsm import State
from sart.bgp.speaker import Speaker
from sart.testing.netns import Namespace, enter

T = TypeVar("T")


class SpeakerThread:
    def __init__(self, namespace: Namespace, config: SpeakerConfig) -> None:
        self.namespace = namespace
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.speaker: Speaker | None = None
        self._started: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name=f"sart-{namespace.name}")

    def _main(self) -> None:
        try:
            enter(self.namespace)
            asyncio.set_event_loop(self.loop)
            self.speaker = Speaker(self.config)
            self.loop.run_until_complete(self.speaker.start())
        except BaseException as error:  # handed to start(), which raises it in the caller
            self._started.set_exception(error)
            return
        self._started.set_result(None)
        self.loop.run_forever()
        self.loop.close()

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        self._started.result(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        if self.speaker is not None:
            self.run(self.speaker.stop(), timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Await a coroutine on the speaker's loop."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[[Speaker], T], timeout: float = 30.0) -> T:
        """Run `function(speaker)` on the speaker's loop (the speaker is not thread-safe)."""

        async def on_loop() -> T:
            assert self.speaker is not None
            return function(self.speaker)

        return self.run(on_loop(), timeout)

    def states(self) -> dict[str, State]:
        return self.call(lambda s: {str(a): n.state for a, n in s.neighbors.items()})

    def routes(self) -> dict[str, list[str]]:
        """The Loc-RIB: prefix -> next hops of its paths (best first)."""
        return self.call(
            lambda s: {str(prefix): [str(p.next_hop) for p in paths] for prefix, paths in s.rib}
        )
