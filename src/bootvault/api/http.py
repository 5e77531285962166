"""The HTTP protocol under the API: uvicorn's httptools protocol, plus what it lacks against slow
or oversized requests. A request's headers must arrive within `header_timeout` seconds and fit in
`max_header_bytes`; otherwise the connection is answered 408/431 and closed. A request the parser
cannot read is answered 400. All three in OCI's error shape. (The body's own limits are in
api/common.py: it is read only after the headers authenticate.)"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    max_header_bytes = 32 << 10

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # bytes received while the headers were incomplete
        self._header_size = 0  # the request line and headers as parsed
        self._in_headers = True
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: bytes, code: str, message: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(error_bytes(status, code, message))
            self.transport.close()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._in_headers:
            self._refuse(
                b"408 Request Timeout",
                "RequestTimeout",
                f"The request headers did not arrive within {self.header_timeout:g} s.",
            )

    def _too_large(self) -> None:
        self._refuse(
            b"431 Request Header Fields Too Large",
            "LimitExceeded",
            f"The request line and headers are larger than {self.max_header_bytes} bytes.",
        )

    def data_received(self, data: bytes) -> None:
        # Raw bytes count only while the headers are still incomplete after this segment (one
        # endless header line); a fast client sends its headers and body in one segment, and the
        # body has limits of its own. Complete headers are measured as parsed (on_headers_complete).
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers:
            if self._header_bytes > self.max_header_bytes:
                self._too_large()
            else:  # headers still incomplete after this segment: their clock runs
                self._arm()

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser refuses (bad request line, control bytes in a header...)."""
        self._refuse(b"400 Bad Request", "CannotParseRequest", f"{msg} It is not valid HTTP/1.1.")

    def on_message_begin(self) -> None:
        # No timer yet: a request whose headers complete in the segment that began it (nearly
        # every one) never needs one; data_received arms it when they do not.
        self._in_headers = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._header_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        too_large = self._header_size > self.max_header_bytes
        self._in_headers, self._header_bytes, self._header_size = False, 0, 0
        self._disarm()
        if too_large:
            self._too_large()  # and the request is never started
            return
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def error_bytes(status: bytes, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer (closing the connection) with OCI's error body."""
    body = json.dumps({"code": code, "message": message}).encode()
    head = (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body
