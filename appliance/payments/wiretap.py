"""A wiretap on the box's only egress: a loopback TCP proxy that keeps, and times, every byte sent to the processor.

The egress test reads what left the box field by field; the latency bench reads when each charge
request's first byte reached the processor's door. It listens on 127.0.0.1 only and forwards to
one loopback port; nothing it keeps is ever written to disk.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TappedRequest:
    """One HTTP/1.1 request as it left the box, and when its first byte arrived (monotonic seconds)."""

    at: float
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    form: tuple[tuple[str, str], ...]


class WiretapError(ValueError):
    """The bytes sent are not a well-formed stream of HTTP/1.1 requests."""


class Wiretap:
    """Forwards loopback TCP connections to `target_port`, keeping what the client sends with arrival times.

    Args:
        target_port: the processor's loopback port.
        clock: the time stamps' source (monotonic by default).
    """

    def __init__(self, target_port: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._target = target_port
        self._clock = clock
        self._server = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._streams: list[list[tuple[float, bytes]]] = []
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name="wiretap", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        """The API base to give the gateway instead of the processor's."""
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            chunks: list[tuple[float, bytes]] = []
            with self._lock:
                self._sockets += [client, upstream]
                self._streams.append(chunks)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst, keep in ((client, upstream, chunks), (upstream, client, None)):
                t = threading.Thread(target=self._pump, args=(src, dst, keep), daemon=True)
                t.start()
                with self._lock:
                    self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, keep: list[tuple[float, bytes]] | None) -> None:
        try:
            while data := src.recv(65536):
                if keep is not None:
                    with self._lock:
                        keep.append((self._clock(), data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def sent(self) -> bytes:
        """Every byte the box sent, connection after connection."""
        with self._lock:
            return b"".join(data for chunks in self._streams for _, data in chunks)

    def requests(self) -> list[TappedRequest]:
        """Every request sent so far, parsed, in order of arrival."""
        with self._lock:
            streams = [list(chunks) for chunks in self._streams]
        out = [r for chunks in streams for r in parse_requests(chunks)]
        return sorted(out, key=lambda r: r.at)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._acceptor.join(timeout=5)
        self._server.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(timeout=5)
        for s in sockets:
            s.close()

    def __enter__(self) -> Wiretap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_requests(chunks: list[tuple[float, bytes]]) -> Iterator[TappedRequest]:
    """HTTP/1.1 requests one after another on one kept-alive connection; raises WiretapError if malformed."""
    stream = b"".join(data for _, data in chunks)
    starts: list[tuple[int, float]] = []
    offset = 0
    for at, data in chunks:
        starts.append((offset, at))
        offset += len(data)

    def arrival(position: int) -> float:
        when = starts[0][1]
        for begin, at in starts:
            if begin > position:
                break
            when = at
        return when

    pos = 0
    while pos < len(stream):
        end = stream.find(b"\r\n\r\n", pos)
        if end < 0:
            raise WiretapError("a request head must end with a blank line")
        try:
            lines = stream[pos:end].decode("ascii").split("\r\n")
            method, target, version = lines[0].split(" ")
        except (UnicodeDecodeError, ValueError) as err:
            raise WiretapError(f"not an HTTP request line at byte {pos}") from err
        if version != "HTTP/1.1":
            raise WiretapError(f"not HTTP/1.1: {version!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() in headers:
                raise WiretapError(f"header {name} sent twice")
            headers[name.lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = stream[end + 4 : end + 4 + length]
        url = urllib.parse.urlsplit(target)
        try:
            form = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as err:
            raise WiretapError("a request body is not form-encoded ASCII") from err
        yield TappedRequest(
            arrival(pos),
            method,
            url.path,
            tuple(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
            headers,
            tuple(form),
        )
        pos = end + 4 + length
