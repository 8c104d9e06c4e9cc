"""A small asyncio TCP fault proxy on 127.0.0.1, switched between modes while traffic flows.

Modes: ``pass`` (forward bytes), ``delay`` (forward, each chunk held ``delay`` seconds), ``reset``
(refuse: accept then abort with RST; live connections are aborted too), ``blackhole`` (accept and
read, never answer; live connections stop forwarding), ``freeze`` (a peer that stopped reading: live
connections are kept but neither read nor forwarded, new ones are accepted and never read, so a sender's
writes block once the socket buffers are full; ``freeze_after(n)`` enters it once ``n`` bytes went
upstream, i.e. mid-upload), and for HTTP upstreams ``http503`` and
``http403`` (answer every request with that status and an Azure Storage error body, as a throttled
account or a revoked role would). Switching to a refusing mode aborts live connections so that keep-
alive clients meet the new mode on their next request.

The proxy runs its own event loop in a thread, so tests can block (subprocesses, sync HTTP) freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["pass", "delay", "reset", "blackhole", "freeze", "http503", "http403"]
_REFUSING: tuple[Mode, ...] = ("reset", "blackhole", "http503", "http403")
_CHUNK = 64 * 1024

_ERRORS = {
    "http503": (503, "Server Busy", "ServerBusy", "The server is currently unable to receive requests."),
    "http403": (
        403,
        "This request is not authorized to perform this operation using this permission.",
        "AuthorizationPermissionMismatch",
        "This request is not authorized to perform this operation using this permission.",
    ),
}


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN: the peer sees ECONNRESET."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        receive_buffer: int | None = None,
        mss: int | None = None,
    ) -> None:
        """``receive_buffer`` fixes SO_RCVBUF of accepted connections (no autotuning) and ``mss`` clamps the
        segment size they announce (loopback's is 64 KiB, which makes senders size their send buffers in
        MiB), so that a frozen proxy stops a sender after a few hundred KiB, as a real network would,
        instead of the MiB loopback buffers absorb."""
        self.upstream = (upstream_host, upstream_port)
        self.receive_buffer = receive_buffer
        self.mss = mss
        self.bytes_upstream = 0
        self._freeze_at: int | None = None
        self.port = 0
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    # --- control (any thread) ---------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def set(self, mode: Mode, *, delay: float = 0.0) -> None:
        """Switch mode; entering or leaving a refusing mode aborts every live connection."""

        def apply() -> None:
            previous, self.mode = self.mode, mode
            self.delay = delay
            if mode in _REFUSING or previous in _REFUSING:
                for writer in list(self._live):
                    _abort(writer)
                self._live.clear()

        self._loop.call_soon_threadsafe(apply)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(5)

    def freeze_after(self, n: int) -> None:
        """Switch to ``freeze`` once ``n`` more bytes have been forwarded upstream."""

        def apply() -> None:
            self._freeze_at = self.bytes_upstream + n

        self._loop.call_soon_threadsafe(apply)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(5)

    @contextlib.contextmanager
    def fault(self, mode: Mode, *, delay: float = 0.0) -> Iterator[None]:
        self.set(mode, delay=delay)
        try:
            yield
        finally:
            self.set("pass")

    # --- the loop ---------------------------------------------------------------------------------
    async def _start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.receive_buffer is not None:  # inherited by accepted sockets
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        if self.mss is not None:  # announced in the SYN-ACK of accepted connections
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, self.mss)
        sock.bind(("127.0.0.1", 0))
        limit = self.receive_buffer or 64 * 1024
        self._server = await asyncio.start_server(self._handle, sock=sock, backlog=256, limit=limit)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._live):
            _abort(writer)
        self._live.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        mode = self.mode
        if mode == "reset":
            _abort(writer)
            return
        if mode == "blackhole":
            await self._swallow(reader, writer)
            return
        if mode == "freeze":
            await self._hold(writer)
            return
        if mode in ("http503", "http403"):
            await self._answer_http(reader, writer, mode)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        self._live.add(writer)
        self._live.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._live.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool = False
    ) -> None:
        try:
            while True:
                while self.mode == "freeze":  # stop reading: the sender's buffers fill and its writes block
                    await asyncio.sleep(0.1)
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if upstream:
                    self.bytes_upstream += len(data)
                    if self._freeze_at is not None and self.bytes_upstream >= self._freeze_at:
                        self._freeze_at = None
                        self.mode = "freeze"  # this chunk waits with the rest until the mode changes
                while self.mode in ("blackhole", "freeze"):  # a live connection that stalls, as through a dead link
                    await asyncio.sleep(0.1)
                if self.mode == "delay" and self.delay > 0:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            _abort(writer)

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._live.add(writer)
        try:
            while await reader.read(_CHUNK):
                pass
        except OSError:
            pass
        finally:
            self._live.discard(writer)
            writer.close()

    async def _hold(self, writer: asyncio.StreamWriter) -> None:
        """Accept and never read nor answer (until the mode changes or the peer goes away)."""
        self._live.add(writer)
        try:
            while self.mode == "freeze" and not writer.is_closing():
                await asyncio.sleep(0.1)
        finally:
            self._live.discard(writer)
            writer.close()

    async def _answer_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: Mode) -> None:
        """Read each request (headers and Content-Length body) and answer it with the canned error."""
        status, reason, code, message = _ERRORS[mode]
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
        ).encode()
        try:
            self._live.add(writer)
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip() or 0)
                if length:
                    await asyncio.wait_for(reader.readexactly(length), 30)
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nx-ms-error-code: {code}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            self._live.discard(writer)
            writer.close()
