"""Listening sockets that belong to one instance, and the limits every server runs with.

granian binds its own sockets with ``SO_REUSEPORT``, so a second, unrelated process on the same
address starts without complaint and the kernel splits connections between the two. We bind
instead, without ``SO_REUSEPORT``: a second instance fails at once with one line, while the
workers of one instance share the socket we hand them (a forked worker inherits it).

The limits are what keeps a server answering when thousands of clients connect and send
nothing, or trickle a byte at a time: a deadline for the request head (from the first byte
on; granian's HTTP/1 mode enforces it from accept, and between requests on a kept-alive
connection), a bound on open connections per process (connections past it wait in the
listen backlog until a slot frees, which the deadline guarantees), and a backlog large
enough not to be the limit itself.

And a deadline for clients that stop taking what is sent (``send_timeout``, nginx's
``send_timeout``): a client that acknowledges nothing, or keeps its window shut, for that
long has its connection closed by the kernel (``TCP_USER_TIMEOUT`` on the listening socket,
which every accepted connection inherits). Without it nothing ended such a response: granian
has no write deadline, a client that vanished without a FIN or reset held it for the ~15
minutes of the kernel's retransmissions, and one that stayed but stopped reading (its window
shut, answering the kernel's probes) held it for ever, with its task, file, stream slot and
buffers. With the connection gone, the response ends as for any client that left.
The kernel counts a window too small for one segment as shut (it then only probes): on the
internet a segment is ~1.4 KB, but on loopback 64 KB, so there a client reading less than
that at a time for ``send_timeout`` is cut although it reads (a proxy on the same host that
buffers responses, as nginx does by default, reads as fast as it can).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import resource
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

# Descriptors kept free for everything that is not a client connection: store files,
# spools, DuckDB, store connections (a quarter of the limit where that is less).
RESERVED_DESCRIPTORS = 1024
# Stream slots (pythonhosted.web.streams) bound the descriptors requests hold besides their
# connection to this part of what is left after the reserve.
STREAM_PART = 3
# Connections every server in one process (``serve``) gets at least, where the limit allows:
# 2.5 times the classic soft limit of 1,024, which idle crowds just past it are sized
# against, and room for 10,000 idle clients spread over serve's five addresses.
CONNECTION_FLOOR = 2560


class ListenError(Exception):
    """An address that cannot be served, in one line for the operator."""


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Bind:
        """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> Bind; ValueError with a clear reason.

        An IPv6 host needs both brackets and nothing else does (``[::1:80`` was taken as
        ``[::1]:80``), and a port is 1-5 ASCII digits (``²`` and 5,000 digits reached int()).
        """
        host, sep, port = text.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        bare = host.strip("[]")
        if (
            not sep
            or not bare
            or (":" in bare) != bracketed
            or (not bracketed and bare != host)
            or not (port.isascii() and port.isdigit() and len(port) <= 5)
            or not 0 < int(port) < 65536
        ):
            raise ValueError(f"bind address must be HOST:PORT, got {text!r}")
        return cls(bare, int(port))

    def url(self) -> str:
        return f"http://{self}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class LimitsSource(Protocol):
    """What the ``[http]`` settings section provides (kept structural: web imports no config)."""

    max_connections: int
    header_timeout: float
    backlog: int
    drain_timeout: float
    send_timeout: float


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 16384
    header_timeout: float = 10.0
    backlog: int = 4096
    drain_timeout: float = 20.0  # after a stop, in-flight requests' time to finish
    send_timeout: float = 60.0  # a client taking nothing this long is cut (0: never)
    configured: bool = False  # max_connections was set by the operator, not left at its default

    @classmethod
    def of(cls, source: LimitsSource) -> ServerLimits:
        configured = "max_connections" in getattr(source, "model_fields_set", ())
        return cls(
            source.max_connections,
            source.header_timeout,
            source.backlog,
            source.drain_timeout,
            source.send_timeout,
            configured,
        )

    def within_descriptors(self, share: float = 1.0) -> ServerLimits:
        """These limits with ``max_connections`` lowered to this server's ``share`` of what
        the process may open.

        Raises the soft open-file limit to the hard one first (as nginx's
        ``worker_rlimit_nofile`` does): a default soft limit of 1,024 would otherwise stop
        the server at about a thousand connections, however high the bound. Servers in one
        process (``serve``) split what is left after the reserve: when each could take the
        whole of it, idle connections to two of them took every descriptor, and every
        service, the download log's spool and the ingest pass failed with EMFILE.
        """
        if raise_open_file_limit() == resource.RLIM_INFINITY:
            return self
        usable = max(1, int(usable_descriptors() * share))
        if usable < self.max_connections:
            return dataclasses.replace(self, max_connections=usable)
        return self


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one where it is lower; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def descriptor_shares(weights: Sequence[int], usable: int) -> list[float]:
    """Each server's share of ``usable`` descriptors: by weight, but none fewer than
    ``CONNECTION_FLOOR`` connections, or where the limit is too low for that, than a share of
    ``len(weights) + 1`` equal ones (so the floors leave at least as much again by weight).

    By weight alone the smallest shares were too small for what any address on the internet
    gets: with 20,000 descriptors, linehaul's share was 948 connections, so 1,000 silent
    clients on its port (just past the classic limit of 1,024) held its health checks for the
    head deadline. The servers below the floor are raised to it and the others share the
    rest by weight, found by raising the lowest until none is left below.
    """
    floor = min(CONNECTION_FLOOR, usable / (len(weights) + 1))
    raised: set[int] = set()
    while True:
        rest = usable - floor * len(raised)
        weighed = sum(weight for i, weight in enumerate(weights) if i not in raised)
        low = {
            i
            for i, weight in enumerate(weights)
            if i not in raised and rest * weight / weighed < floor
        }
        if not low:
            break
        raised |= low
    return [
        (floor if i in raised else rest * weight / weighed) / usable
        for i, weight in enumerate(weights)
    ]


def usable_descriptors() -> int:
    """Descriptors the open-file limit in force leaves for connections and streams after the
    reserve (``RLIM_INFINITY``: taken as a million)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - min(RESERVED_DESCRIPTORS, soft // 4))


def report_lowered(wanted: ServerLimits, fitted: Sequence[tuple[Bind, ServerLimits]]) -> None:
    """One line naming every server whose ``max_connections`` the open-file limit lowered: a
    warning when the operator asked for more, else information (``serve`` shares the limit
    out on every start; a warning each time would be noise)."""
    lowered = [
        f"{limits.max_connections} on {bind}"
        for bind, limits in fitted
        if limits.max_connections < wanted.max_connections
    ]
    if lowered:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.log(
            logging.WARNING if wanted.configured else logging.INFO,
            "http.max_connections lowered from %d to what the open-file limit (%d) allows: %s",
            wanted.max_connections,
            soft,
            ", ".join(lowered),
        )


def claim(bind: Bind, backlog: int, send_timeout: float = 0.0) -> socket.socket:
    """A listening socket on ``bind`` that no other process can share, whose connections
    are closed by the kernel once their client has taken nothing for ``send_timeout``
    seconds (0: only the kernel's own retransmission limits apply).

    ``SO_REUSEADDR`` only lets a restart bind over connections still in TIME_WAIT; without
    ``SO_REUSEPORT`` the bind fails if anything else listens on the address, granian
    instances included (they set ``SO_REUSEPORT`` on their own sockets).
    """
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if send_timeout > 0:
            user_timeout = max(1, round(send_timeout * 1000))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout)
        sock.bind((bind.host, bind.port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(_reason(bind, exc)) from None
    except (OverflowError, UnicodeError) as exc:  # a host that is not an address at all
        sock.close()
        raise ListenError(f"cannot listen on {bind}: {exc}") from None
    sock.set_inheritable(True)  # multi-process workers are forked with it
    return sock


def claim_all(binds: list[Bind], backlog: int, send_timeout: float = 0.0) -> list[socket.socket]:
    """Claim every address or none (a failure releases the ones already claimed)."""
    claimed: list[socket.socket] = []
    try:
        for bind in binds:
            claimed.append(claim(bind, backlog, send_timeout))
    except ListenError:
        for sock in claimed:
            sock.close()
        raise
    return claimed


def _reason(bind: Bind, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{bind} is already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {bind}: no such address on this machine"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {bind}: permission denied (ports below 1024 need privileges)"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {bind}: {exc.strerror}"
    return f"cannot listen on {bind}: {exc.strerror or exc}"
