"""What every request passes before the app reads it: the size of its head (``http_options``, for uvicorn), the
security headers every response carries, the refusals ``Guard`` answers itself (an unknown Host, a missing API key, a
client over its rate, another site's POST), and the limits ``BodyLimit`` holds a request body to (its size, how many
arrive at once, how long one may take). The two middlewares are ASGI, which ``app.create_app`` wraps around the app;
``ApiError`` is how anything answers bad input.

    uvicorn.run(app, ..., **http_options(settings.limits))
    app.add_middleware(BodyLimit, limits=settings.limits)
    app.add_middleware(Guard, settings=settings)
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import logging
import math
import time

from anyio import to_thread
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from digitlab.serve.settings import Limits, ServeSettings

log = logging.getLogger("digitlab.serve")


class ApiError(Exception):
    """Bad input, answered with ``status``, a one-line ``detail`` and any ``headers`` (Retry-After)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


# --- a request's head ----------------------------------------------------------------------------------------------

def http_options(limits: Limits) -> dict:
    """uvicorn's options that hold a request's line and headers to ``limits.max_header_bytes``, for either HTTP
    parser it may run: h11 has an option for it (it answers 400 past it); httptools has none, so its protocol is
    ``bounded_httptools``'s (431). Without a bound a client sending a header of many megabytes held the event loop
    for seconds (measured: docs/serving.md, 'Huge headers and trickled bodies')."""
    return {"http": bounded_httptools() or "h11", "h11_max_incomplete_event_size": limits.max_header_bytes}


@functools.cache
def bounded_httptools():
    """uvicorn's httptools protocol with a request's head held to its config's ``h11_max_incomplete_event_size``
    (431 and the connection closed past it), or None where httptools is not installed.

    llhttp sets no bound on a head, and httptools gathers a header value by joining the pieces that arrive one to
    the next, which takes time growing with the square of its length. So the head is counted here, before the
    parser sees it: a chunk that takes it past the bound while it is still incomplete is the last one parsed. (A
    head over the bound that arrives whole in one chunk costs no more than that chunk; ``Guard`` answers it 431.)"""
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:
        return None

    class BoundedHead(HttpToolsProtocol):
        head_bytes = 0      # bytes received since the current request's head began
        in_body = False     # its head is whole: what comes is its body, not counted

        def data_received(self, data: bytes) -> None:
            counted = not self.in_body
            if counted:
                self.head_bytes += len(data)
            super().data_received(data)
            limit = self.config.h11_max_incomplete_event_size
            if counted and not self.in_body and self.head_bytes > limit and not self.transport.is_closing():
                self.logger.warning("request headers over %d bytes from %s: refused 431", limit,
                                    (self.client or ("?",))[0])
                detail = f'{{"detail": "request headers too large: over the limit of {limit:,} bytes"}}'.encode()
                self.transport.write(b"".join([
                    STATUS_LINE[431], b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(detail),
                    b"connection: close\r\n\r\n", detail]))
                self.transport.close()

        def on_headers_complete(self) -> None:
            self.in_body = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.in_body, self.head_bytes = False, 0  # what comes next is the next request's head
            super().on_message_complete()

    return BoundedHead


# --- what every response carries, and which requests are refused before they are read ------------------------------

# The page loads only its own files; a browser neither guesses content types nor frames it. Swagger UI at /docs starts
# itself with an inline script, so its page allows that one thing.
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]
PAGE_POLICY = (b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
               b"frame-ancestors 'none'")
DOCS_POLICY = PAGE_POLICY + b"; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"


class Guard:
    """ASGI middleware: security headers on every response, its refusals included, and what is refused before the
    app sees it: headers over ``Limits.max_header_bytes`` (431), an unknown Host (400), a missing API key (401), a
    client over its rate (429), and a POST from another site's page (403).

    A browser sends an ``Origin`` header with a cross-site POST, and a plain form or ``text/plain`` POST needs no
    CORS preflight, so without this check any page a user visits could make their browser post to a server on their
    machine. Clients that are not browsers send no ``Origin`` and are not affected.
    """

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings
        self.requests: dict[str, collections.deque] = {}  # client address -> times of its recent API requests

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = DOCS_POLICY if scope["path"].startswith("/docs") else PAGE_POLICY

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS,
                                      (b"content-security-policy", policy)]
            await send(message)

        refusal = self._refusal(scope, dict(scope["headers"]))
        if refusal is not None:
            return await refusal(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope, headers) -> JSONResponse | None:
        """Why this request is answered here without reaching the app, or None: a Host this server does not answer,
        a missing API key, a client over its rate, or a POST from another site's page. The page, its files and
        /api/health need no key and count against no rate: a load balancer checks health, a person loads the page."""
        limit = self.settings.limits.max_header_bytes
        if head_size(scope) > limit:  # one that arrived whole in one piece (bounded_httptools refuses the others)
            return JSONResponse({"detail": f"request headers too large: over the limit of {limit:,} bytes"},
                                status_code=431, headers={"Connection": "close"})
        allowed_hosts = self.settings.allowed_hosts
        if allowed_hosts is not None and _host_name(headers.get(b"host")) not in allowed_hosts:
            return JSONResponse({"detail": f"this server answers requests to {', '.join(allowed_hosts)} only (Host "
                                           f"header)"}, status_code=400)
        path = scope["path"]
        api = path.startswith("/api/") and path != "/api/health"
        if (api or path == "/metrics") and scope["method"] != "OPTIONS":  # Prometheus's scrapes count on no rate
            refusal = self._key_or_rate_refusal(scope, headers, rate=api)
            if refusal is not None:
                return refusal
        origin = headers.get(b"origin")
        allowed_elsewhere = origin is not None and origin.decode("latin-1") in self.settings.cors_origins
        if scope["method"] == "POST" and origin is not None and not allowed_elsewhere \
                and not _same_origin(origin, headers.get(b"host"), scope):
            return JSONResponse({"detail": "cross-origin requests are refused: this server answers its own page "
                                           "and clients that are not browsers"}, status_code=403)
        return None

    def _key_or_rate_refusal(self, scope, headers, rate: bool = True) -> JSONResponse | None:
        """The API key and (``rate``) the per-client rate, where the settings ask for them."""
        key = self.settings.api_key
        if key is not None:
            given = headers.get(b"x-api-key") or _bearer(headers.get(b"authorization", b""))
            if not hmac.compare_digest(given, key.encode()):
                return JSONResponse({"detail": "an API key is needed: send it as X-API-Key or Authorization: Bearer "
                                               "(the page takes it after # in its address: /#key=...)"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if rate and self.settings.rate_per_minute is not None:
            client = (scope.get("client") or ("?", 0))[0]
            now, times = time.monotonic(), self.requests.setdefault(client, collections.deque())
            while times and now - times[0] >= 60:
                times.popleft()
            if len(times) >= self.settings.rate_per_minute:
                wait = max(1, math.ceil(60 - (now - times[0])))
                return JSONResponse({"detail": f"too many requests: {self.settings.rate_per_minute} a minute from "
                                               f"one address; try again in {wait} s"}, status_code=429,
                                    headers={"Retry-After": str(wait)})
            times.append(now)
            if len(self.requests) > 10_000:  # forget quiet clients, so the table cannot grow without bound
                self.requests = {c: t for c, t in self.requests.items() if t and now - t[-1] < 60}
        return None


def head_size(scope) -> int:
    """About the bytes of a request's line and headers: its target and each header's name and value with their
    separators."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    return target + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def _bearer(authorization: bytes) -> bytes:
    """The credentials of an ``Authorization: Bearer KEY`` header, its scheme in any case (RFC 7235 makes schemes
    case-insensitive); a header without that scheme is taken whole."""
    scheme, _, credentials = authorization.partition(b" ")
    return credentials.strip(b" ") if scheme.lower() == b"bearer" else authorization


def _host_name(host: bytes | None) -> str:
    """The name in a Host header, without its port: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "[::1]"."""
    name = (host or b"").decode("latin-1").strip().lower()
    if name.startswith("["):  # an IPv6 address, its colons inside the brackets
        return name[:name.find("]") + 1] if "]" in name else name
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def _same_origin(origin: bytes, host: bytes | None, scope) -> bool:
    """Whether an Origin header names this server: the scheme it was reached by and the Host the request names."""
    scheme = scope.get("scheme", "http")
    return host is not None and origin.decode("latin-1").rstrip("/") == f"{scheme}://{host.decode('latin-1')}"


# --- request bodies -----------------------------------------------------------------------------------------------

class BodyLimit:
    """ASGI middleware: refuse a body over the limit from its Content-Length, else count it as it streams in.

    A client can lie about the length or send chunks without one, so counting is what really holds; the header check
    just answers honest clients at once, without reading their upload. A body that stops arriving (a Content-Length
    larger than what is sent, a client holding the connection) is given up after ``Limits.body_seconds`` without a
    new piece, and one that trickles in after ``Limits.max_body_seconds`` in all: 408, and what was received is let
    go. After a large body the memory it took is handed back to the system (``release_memory``).

    At most ``Limits.max_uploads`` bodies arrive at once, so slow senders cannot hold more than that many in memory,
    and at most ``Limits.max_client_uploads`` from one client address (one more from it is answered 429 before a byte
    of it is read). When every place is taken, a client holding fewer places than another takes the oldest of that
    other's, which is answered 503 (at its next piece, or when none comes in time): the places are shared out by
    address, so a few addresses trickling bodies cannot keep everyone else's uploads out (503 for a newcomer only
    when every address holds about as many as it would).
    """

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits
        self.arriving: dict[str, list[Arrival]] = {}  # client address -> its bodies still arriving, oldest first
        self.uploading = 0  # bodies still arriving, from every address
        self.large = 0      # requests past RELEASE_AFTER bytes that have not ended yet

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.limits.max_batch_bytes if scope["path"].endswith("/batch") else self.limits.max_upload_bytes
        refusal = content_length_refusal(scope, limit)
        client = (scope.get("client") or ("?", 0))[0]
        if refusal is None:
            refusal = self._admit(client)
        if refusal is not None:
            return await refusal(scope, receive, send)
        arrival = Arrival(client, deadline=time.monotonic() + self.limits.max_body_seconds)
        self.arriving.setdefault(client, []).append(arrival)
        self.uploading += 1
        try:
            await self.app(scope, functools.partial(self._counted_receive, arrival, receive, limit), send)
        except ClientDisconnect:  # the client went away before its body arrived: no one to answer
            log.info("%s %s: the client went away while sending its body", scope["method"], scope["path"])
        finally:
            self._arrived(arrival)
            if arrival.large:
                self.large -= 1
                if self.large == 0:  # the last large body in memory is let go: give its pages back
                    await to_thread.run_sync(release_memory)

    async def _counted_receive(self, arrival: Arrival, receive, limit: int) -> dict:
        """The app's ``receive`` for one body: its next piece, counted against ``limit`` (413 past it); the body's
        place is given up once it is whole or refused."""
        if arrival.set_aside:
            raise place_given_away()
        if arrival.released:  # the body is whole: what comes now is the client going away
            return await receive()
        message = await self._next_piece(arrival, receive)
        arrival.received += len(message.get("body", b""))
        if not arrival.large and arrival.received > RELEASE_AFTER:
            arrival.large = True
            self.large += 1
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._arrived(arrival)
        if arrival.received > limit:
            self._arrived(arrival)
            raise ApiError(413, f"body too large: over the limit of {limit:,} bytes")
        return message

    async def _next_piece(self, arrival: Arrival, receive) -> dict:
        """The body's next message, waited for ``Limits.body_seconds`` at most and no later than its deadline (408
        past either, and its place given up); 503 when its place went to another address's body meanwhile."""
        left = arrival.deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), max(0.0, min(self.limits.body_seconds, left)))
        except asyncio.TimeoutError:
            if arrival.set_aside:
                raise place_given_away() from None
            self._arrived(arrival)
            raise ApiError(408, f"the request body stopped arriving: nothing came for {self.limits.body_seconds} "
                                f"s" if left > self.limits.body_seconds else f"the request body did not arrive "
                                f"within {self.limits.max_body_seconds} s") from None
        if arrival.set_aside:  # its place went to another address's body while it waited for this piece
            raise place_given_away()
        return message

    def _admit(self, client: str) -> JSONResponse | None:
        """None if a body from ``client`` may start arriving now (taking another address's oldest place when that
        is fairer), else the refusal: 429 over its own cap, 503 when every place is fairly taken."""
        held = len(self.arriving.get(client, ()))
        retry = {"Retry-After": str(UPLOAD_RETRY)}
        if held >= self.limits.max_client_uploads:
            return JSONResponse({"detail": f"too many uploads at once: {held} from your address are arriving "
                                           f"already; try again in {UPLOAD_RETRY} s"}, status_code=429, headers=retry)
        if self.uploading < self.limits.max_uploads:
            return None
        most = max(self.arriving.values(), key=len)
        if len(most) < held + 2:  # taking one of theirs would leave them no fewer than this client
            return JSONResponse({"detail": f"busy: {self.uploading} uploads are arriving already; try again in "
                                           f"{UPLOAD_RETRY} s"}, status_code=503, headers=retry)
        oldest = most[0]
        log.info("an upload from %s gives its place to one from %s (%d places, %d of them %s's)", oldest.client,
                 client, self.limits.max_uploads, len(most), oldest.client)
        self._arrived(oldest)
        oldest.set_aside = True
        return None

    def _arrived(self, arrival: Arrival) -> None:
        """``arrival`` no longer holds a place: its body is whole, refused, given up or set aside (once only)."""
        if arrival.released:
            return
        arrival.released = True
        self.uploading -= 1
        mine = self.arriving[arrival.client]
        mine.remove(arrival)
        if not mine:
            del self.arriving[arrival.client]


class Arrival:
    """One body arriving: its client's address, its deadline and the bytes received, whether it still holds a place,
    and whether that place was given to another address's body (then its request is answered 503 when its next piece
    comes, or none does in time)."""

    def __init__(self, client: str, deadline: float):
        self.client = client
        self.deadline = deadline  # time.monotonic() by which the whole body must have come
        self.received = 0         # bytes of it so far
        self.large = False        # past RELEASE_AFTER bytes: counted in BodyLimit.large until its request ends
        self.released = False     # no longer holds a place: whole, refused, given up or set aside
        self.set_aside = False


# A body over this many bytes is received in many pieces, which the C allocator keeps for the process after they are
# freed; once no such body is left, they are handed back (measured: docs/serving.md, 'Memory under large uploads').
RELEASE_AFTER = 2**20
UPLOAD_RETRY = 5  # seconds a client refused for too many uploads at once is asked to wait


def content_length_refusal(scope, limit: int) -> JSONResponse | None:
    """The answer to a Content-Length over ``limit`` (413) or one that is no number (400), before a byte of the body
    is read; None for a request without the header or within the limit."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is None:
        return None
    declared = declared.strip(b" \t")  # HTTP allows whitespace around a value
    if declared.isdigit() and int(declared) <= limit:
        return None
    detail = (f"body too large: {int(declared):,} bytes is over the limit of {limit:,}" if declared.isdigit()
              else "invalid Content-Length header")
    return JSONResponse({"detail": detail}, status_code=413 if declared.isdigit() else 400)


def place_given_away() -> ApiError:
    """The answer to an upload whose place was given to another address's (``BodyLimit``)."""
    return ApiError(503, f"busy: this upload's place was given to another address's; try again in {UPLOAD_RETRY} s",
                    {"Retry-After": str(UPLOAD_RETRY)})


def release_memory() -> None:
    """Hand the memory the C allocator holds free back to the system: glibc's ``malloc_trim``, where there is one
    (elsewhere nothing happens)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        return None
