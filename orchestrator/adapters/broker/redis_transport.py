"""kombu's Redis transport with one fix: a channel finishes closing when its pending BRPOP has died.

Why (celery 5.7.0, kombu 5.7.0; reproduction in `ops/upstream/kombu-close-after-collect/`): when
the broker goes away, celery's consumer calls `Connection.collect()` and then `Connection.close()`
on the broken connection. In `collect()`, kombu's `Channel.close()` first reads the reply of the
BRPOP it has in flight; that read raises a connection error before the channel is marked closed,
`collect()` ignores the error and detaches the transport (`transport.client = None`). `close()` then
closes the same channel again, and restoring its unacknowledged messages (a countdown message held
in memory, or a late-acked task still running) builds a connection pool from `transport.client`:
`AttributeError: 'NoneType' object has no attribute 'hostname'`, which celery does not treat as a
connection error, so the worker stops for good ("Unrecoverable error").

Here a connection error on that last read only ends the read: the channel goes on closing while the
transport is still attached, its restore fails as a connection error (the broker is down) and is
ignored like any other, and the second `close()` finds the channel closed. The messages it held stay
in the broker's unacked set (when the broker kept its data) and come back after the visibility
timeout; the ledger's reconciler re-dispatches the work long before that.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import TYPE_CHECKING, Any

import kombu.transport
from kombu.transport import TRANSPORT_ALIASES, redis

log = logging.getLogger(__name__)

_THIS_TRANSPORT = f"{__name__}:Transport"


class Channel(redis.Channel):
    if TYPE_CHECKING:  # kombu's, left out of the stubs in celery-types
        _in_poll: Any
        connection_errors: tuple[type[Exception], ...]

        def _brpop_read(self, **options: Any) -> bool: ...

    def close(self) -> None:
        if self._in_poll and not self.closed:
            try:
                self._brpop_read()
            except Empty:
                pass
            except self.connection_errors as error:
                log.debug("the BRPOP pending on a closing channel was lost with its connection: %r", error)
        super().close()


class Transport(redis.Transport):
    Channel = Channel


def install() -> None:
    """Make `redis://`, `rediss://` and `redis+socket://` broker URLs use this transport.

    kombu resolves a URL's scheme (the part before `+` for `redis+socket`) through this alias table
    when a connection first needs its transport: connections made after this call use ours.
    """
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = _THIS_TRANSPORT
        # Forget a resolution cached before this call (kombu's private cache, hence not in its stubs).
        kombu.transport._transport_cache.pop(scheme, None)  # type: ignore[attr-defined]
