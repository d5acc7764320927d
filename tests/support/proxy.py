"""A TCP proxy on loopback that a test can cut (every live connection dropped) or close (connections
refused) and reopen: a database that goes away and comes back, without touching the real server."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def __enter__(self) -> TcpProxy:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self.close()
        self.cut()

    def open(self) -> None:
        """Accept connections (again, on the same port)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy-accept", daemon=True).start()

    def close(self) -> None:
        """Refuse new connections until `open` (live ones keep going: `cut` drops them)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def cut(self) -> int:
        """Drop every live connection, as a terminated backend or a network fault would; how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for client, server in pairs:
            for end in (client, server):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
        return len(pairs)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.add((client, server))
            threading.Thread(target=self._pipe, args=(client, server), name="tcp-proxy-pipe", daemon=True).start()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select(timeout=1.0):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)  # only the two sockets are registered
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
                if client.fileno() < 0 or server.fileno() < 0:
                    return
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                self._pairs.discard((client, server))
            for end in (client, server):
                with contextlib.suppress(OSError):
                    end.close()
