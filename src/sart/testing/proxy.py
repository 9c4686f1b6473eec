"""A TCP forwarder on the loopback for fault tests: put it between one client (a daemon under
test) and a server (the kube-apiserver), then break that client's connections while everything
else still reaches the server directly.

``TcpProxy`` listens on 127.0.0.1 (a free port unless one is given) and copies bytes both ways
to a target host and port. TLS passes through untouched, so a client checks the server's
certificate as usual: the test apiserver's certificate names IP 127.0.0.1, which is also the
proxy's address, so only the port in the kubeconfig changes (``proxied_kubeconfig``).

Faults:

- ``cut()`` closes every open connection at once, on both sides (a reset by default, so the
  client sees an error; ``reset=False`` closes with FIN and the client sees its stream end);
- ``refuse()`` closes each new connection as soon as it is accepted (with a reset: the client
  fails fast with a connection error) until ``accept()``. Connections already open are left
  alone: ``cut()`` them too to force every request through a new connection;
- ``statistics()`` counts the connections forwarded, refused, cut, and open now.

The proxy runs its own event loop on a background thread, so a synchronous test and a coroutine
both use it the same way, and it keeps forwarding while the test's own loop is blocked (in a
synchronous ``ControlPlane.restart`` for instance). Its methods are thread-safe and return once
the proxy's loop has done what they ask (a few microseconds; fine to call from a coroutine).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import attrs
import yaml

__all__ = ["ProxyError", "ProxyStatistics", "TcpProxy", "proxied_kubeconfig"]

T = TypeVar("T")

CHUNK: Final = 65536
CALL_TIMEOUT: Final = 10.0
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


class ProxyError(RuntimeError):
    """The proxy could not start, or was used while not running."""


@attrs.frozen(kw_only=True)
class ProxyStatistics:
    """What the proxy has seen since it started."""

    connections: int
    """Client connections accepted for forwarding (refused ones not included)."""
    open: int
    """Of those, the ones open now."""
    refused: int
    """Client connections closed at once because the proxy was refusing."""
    failed: int
    """Client connections closed because the target could not be reached."""
    cut: int
    """Connections closed by ``cut()``."""


def _close(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Close a connection now, unsent data dropped: with RST (SO_LINGER 0) or with FIN."""
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@attrs.define(eq=False)
class _Link:
    """One forwarded connection: the client side, and the target side once it is connected."""

    client: asyncio.StreamWriter
    target: asyncio.StreamWriter | None = None
    is_cut: bool = False

    def close(self, *, reset: bool) -> None:
        for writer in (self.client, self.target):
            if writer is not None:
                _close(writer, reset=reset)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until end of stream, then pass the half-close on."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if not writer.is_closing() and writer.can_write_eof():
        writer.write_eof()


class TcpProxy:
    """Forwards TCP connections from ``host:port`` (127.0.0.1, a free port by default) to
    ``target_host:target_port``. Use as a context manager, or ``start()`` and ``stop()``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self._port = port
        # A listening socket made elsewhere, e.g. in a lab node's network namespace
        # (sart.testing.netns.listening_socket): clients there reach the target out here.
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._refusing = False
        self._connections = 0
        self._refused = 0
        self._failed = 0
        self._cut = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> TcpProxy:
        """A proxy to the host and port of a URL, e.g. ``ControlPlane.server``."""
        parts = urllib.parse.urlsplit(url)
        target_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        if parts.hostname is None or target_port is None:
            raise ValueError(f"no host and port in {url!r}")
        return cls(parts.hostname, target_port, host=host, port=port, sock=sock)

    # The public view -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started, when it was 0)."""
        if self._server is None:
            raise ProxyError("the proxy is not running")
        return self._port

    @property
    def refusing(self) -> bool:
        return self._refusing

    def url(self, scheme: str = "https") -> str:
        """``scheme://host:port`` of the proxy, for a client configuration."""
        return f"{scheme}://{self.host}:{self.port}"

    def statistics(self) -> ProxyStatistics:
        return self._call(
            lambda: ProxyStatistics(
                connections=self._connections,
                open=len(self._links),
                refused=self._refused,
                failed=self._failed,
                cut=self._cut,
            )
        )

    # Faults ----------------------------------------------------------------------------------

    def cut(self, *, reset: bool = True) -> int:
        """Close every open connection now, both sides; returns how many. With ``reset`` the
        peers get an RST (a connection error), without it a FIN (the stream ends)."""

        def cut_all() -> int:
            links = list(self._links)
            for link in links:
                link.is_cut = True
                link.close(reset=reset)
            self._links.clear()
            self._cut += len(links)
            return len(links)

        return self._call(cut_all)

    def refuse(self) -> None:
        """From now on, reset every new connection as soon as it is accepted."""
        self._call(lambda: setattr(self, "_refusing", True))

    def accept(self) -> None:
        """Forward new connections again (the default)."""
        self._call(lambda: setattr(self, "_refusing", False))

    # Start and stop --------------------------------------------------------------------------

    def start(self, timeout: float = CALL_TIMEOUT) -> Self:
        """Listen and forward, on a new thread; returns once the port is bound."""
        if self._thread is not None:
            raise ProxyError("the proxy is already running")
        loop = asyncio.new_event_loop()
        listening: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._main,
            args=(loop, listening),
            name=f"tcp-proxy-{self.target_host}:{self.target_port}",
            daemon=True,  # a proxy nobody stopped must not keep the interpreter alive
        )
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            listening.result(timeout)
        except BaseException:
            thread.join(timeout)
            self._loop = self._thread = None
            raise
        return self

    def stop(self, timeout: float = CALL_TIMEOUT) -> None:
        """Stop listening, close every connection and end the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has already stopped
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._loop = self._thread = self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # The proxy's thread ----------------------------------------------------------------------

    def _main(
        self, loop: asyncio.AbstractEventLoop, listening: concurrent.futures.Future[None]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            if self._sock is not None:
                serving = asyncio.start_server(self._handle, sock=self._sock)
            else:
                serving = asyncio.start_server(self._handle, self.host, self._port)
            self._server = loop.run_until_complete(serving)
            self._port = self._server.sockets[0].getsockname()[1]
        except BaseException as error:  # handed to start(), which raises it in the caller
            listening.set_exception(error)
            loop.close()
            return
        listening.set_result(None)
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(
                asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True)
            )
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.close(reset=False)
        self._links.clear()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        handler = asyncio.current_task()
        assert handler is not None  # start_server runs each handler as a task
        self._handlers.add(handler)
        try:
            await self._forward(client_reader, client)
        finally:
            self._handlers.discard(handler)

    async def _forward(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self._refusing:
            self._refused += 1
            _close(client, reset=True)
            return
        self._connections += 1
        link = _Link(client)
        self._links.add(link)
        try:
            try:
                target_reader, link.target = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                self._failed += 1
                return
            if link.is_cut:  # cut while the target was being reached
                return
            # Either side failing (reset, broken pipe) ends both: close() below does it.
            with contextlib.suppress(OSError):
                await asyncio.gather(
                    _pump(client_reader, link.target), _pump(target_reader, client)
                )
        finally:
            if link in self._links:
                self._links.discard(link)
                link.close(reset=True)

    def _call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the proxy's loop and return its result."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._server is None:
            raise ProxyError("the proxy is not running")
        if threading.current_thread() is thread:
            return function()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(function())
            except BaseException as error:  # handed to the calling thread
                done.set_exception(error)

        loop.call_soon_threadsafe(run)
        return done.result(CALL_TIMEOUT)


def proxied_kubeconfig(source: Path, proxy: TcpProxy, destination: Path | None = None) -> Path:
    """Write a copy of the kubeconfig ``source`` whose clusters that name the proxy's target
    (same host and port) name the proxy instead; return its path. The default destination is
    next to the source, ``<name>-proxy-<port>``. Relative file references (certificates, keys)
    are made absolute, so the copy can live anywhere."""
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    base = source.resolve().parent
    changed = 0
    for entry in config.get("clusters") or []:
        cluster = entry.get("cluster") or {}
        parts = urllib.parse.urlsplit(str(cluster.get("server", "")))
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        if (parts.hostname, port) == (proxy.target_host, proxy.target_port):
            cluster["server"] = proxy.url(parts.scheme)
            changed += 1
    if not changed:
        raise ProxyError(
            f"no cluster in {source} has the server {proxy.target_host}:{proxy.target_port}"
        )
    for key, field in (("clusters", "cluster"), ("users", "user")):
        for entry in config.get(key) or []:
            _absolute_paths(entry.get(field) or {}, base)
    target = destination or source.with_name(f"{source.name}-proxy-{proxy.port}")
    target.write_text(yaml.safe_dump(config))
    return target


def _absolute_paths(section: dict[str, Any], base: Path) -> None:
    for field in ("certificate-authority", "client-certificate", "client-key", "tokenFile"):
        value = section.get(field)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            section[field] = str(base / value)
