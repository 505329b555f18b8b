"""uvicorn's h11 protocol with a header timeout: slowloris clients are cut off.

uvicorn closes idle keep-alive connections, but a connection that sends part of a request
line or header and then trickles (or nothing) is held forever; enough of them and the node
stops answering at its file-descriptor limit. :func:`protocol_with_header_timeout` returns a
subclass of uvicorn's ``H11Protocol`` that closes a connection whose request headers are not
complete within the timeout after the connection opened or its previous response ended.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def protocol_with_header_timeout(seconds: float) -> type[H11Protocol]:
    """An ``H11Protocol`` subclass closing connections whose headers take over ``seconds``."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                # Waiting for (the rest of) a request line and headers.
                if self._header_timer is None:
                    self._arm()
            else:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # The next request's headers get the same time (uvicorn's keep-alive timer covers
            # only a connection that sends nothing at all).
            self._disarm()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


__all__ = ["protocol_with_header_timeout"]
