"""What the server refuses before the app sees a request: foreign Host headers and slow clients.

- `TrustedHosts`: a request whose ``Host`` header is not one of the names the server answers to
  gets a 400. Without it, a web page on any site can drive a server bound to 127.0.0.1 through
  DNS rebinding (its own name made to resolve to 127.0.0.1: the browser then sends
  ``Host: evil.example`` and treats the answers as same-origin). By default the names are the
  loopback ones plus the address the server is bound to; ``--allowed-hosts`` replaces the list.
  (Starlette's TrustedHostMiddleware does the same, but cuts ``[::1]:8000`` at its first colon and
  answers in plain text rather than with an OpenAI error body.)
- `uvicorn_options`: the limits uvicorn runs with: how long an idle keep-alive connection stays
  open, the largest header block, how many connections at once, and a deadline for a request's
  headers to arrive (uvicorn has none: a client sending one header line every few seconds held a
  connection forever). The deadline for the body is the app's (gptlab.serve.app._Guard, a 408).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Sequence

from uvicorn.protocols.http.h11_impl import H11Protocol

from gptlab.serve.limits import ServeLimits

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")
KEEP_ALIVE_S = 5  # uvicorn's default, made explicit: an idle connection is closed after this
MAX_HEADER_BYTES = 16 * 1024  # h11's incomplete-event limit: the request line and headers together
_LATE = b"request headers not received in time"
LATE_HEADERS = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_LATE), _LATE)
)


def host_name(value: str) -> str:
    """The host part of a Host header (or of an address): lower case, without the port, IPv6
    in brackets: ``"[::1]:8000" -> "[::1]"``, ``"LocalHost:80" -> "localhost"``, ``"::1" -> "[::1]"``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    if value.count(":") > 1:  # a bare IPv6 address (a --host value; a Host header has brackets)
        return f"[{value}]"
    return value.split(":", 1)[0]


def default_allowed_hosts(bind_host: str) -> list[str]:
    """The names a server bound to ``bind_host`` answers to: the loopback names, and the bound
    address itself (or, bound to every interface, this machine's host name: its other addresses
    are not known here, they go in --allowed-hosts)."""
    names = list(LOOPBACK_HOSTS)
    extra = socket.gethostname() if bind_host.strip() in WILDCARD_BINDS else bind_host
    if extra and host_name(extra) not in names:
        names.append(host_name(extra))
    return names


def parse_allowed_hosts(text: str) -> list[str]:
    """``--allowed-hosts a,b:8000,*.lan`` -> ``["a", "b", "*.lan"]`` (ports do not matter)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    return ["*" if n == "*" else n.lower() if n.startswith("*.") else host_name(n) for n in names]


def _host_matches(host: str, allowed: Iterable[str]) -> bool:
    for pattern in allowed:
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class TrustedHosts:
    """ASGI middleware: 400 (an OpenAI error body) unless the Host header names an allowed host.
    A request without a Host header is refused too (every browser sends one)."""

    def __init__(self, app, *, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = [host_name(h) if not h.startswith("*") else h.lower() for h in allowed_hosts]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            return await self.app(scope, receive, send)
        raw = next((v for k, v in scope["headers"] if k.lower() == b"host"), b"")
        host = host_name(raw.decode("latin-1"))
        if host and _host_matches(host, self.allowed):
            return await self.app(scope, receive, send)
        shown = raw.decode("latin-1")[:100]
        message = (
            f"Host header {shown!r} is not a name this server answers to "
            f"({', '.join(self.allowed)}): start it with --allowed-hosts to add names"
            if shown
            else "the request has no Host header"
        )
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_host",
            }
        }
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for a request's headers: ``header_timeout_s`` after
    the connection opens or its previous response ends, a connection still without a new request
    is closed (with a 408 if part of one had arrived). uvicorn's keep-alive time-out does not do
    this: any byte received cancels it."""

    header_timeout_s = ServeLimits.read_timeout_s

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        # armed before uvicorn starts the next pipelined request, which then counts as arrived
        self._arm_header_deadline()
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late, self.cycle)

    def _disarm_header_deadline(self) -> None:
        handle = getattr(self, "_header_deadline", None)
        if handle is not None:
            handle.cancel()
        self._header_deadline = None

    def _headers_late(self, cycle) -> None:
        self._header_deadline = None
        if self.cycle is not cycle or self.transport.is_closing():
            return  # a request's headers did arrive (uvicorn made a new cycle for it)
        partial, _ = self.conn.trailing_data
        if partial:
            self.transport.write(LATE_HEADERS)
        self.transport.close()


def uvicorn_options(
    *,
    header_timeout_s: float = ServeLimits.read_timeout_s,
    max_connections: int = ServeLimits.max_connections,
) -> dict:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``: the h11 protocol with the
    header deadline, a bounded header block, the keep-alive time-out and ``max_connections``
    (beyond it uvicorn answers 503)."""
    protocol = type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s}
    )
    return dict(
        http=protocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=max_connections,
    )
