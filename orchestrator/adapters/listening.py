"""Listening sockets for what rebill serves (the web view, /metrics, Flower): a port that cannot be
taken is a plain error naming it, never a traceback."""

from __future__ import annotations

import errno
import socket

from orchestrator.domain.errors import ConfigurationError

__all__ = ["bind", "cannot_listen", "ensure_free"]


def cannot_listen(address: str, port: int, error: OSError) -> ConfigurationError:
    if error.errno == errno.EADDRINUSE:
        return ConfigurationError(f"port {port} on {address} is already in use (choose another with --port)")
    return ConfigurationError(f"cannot listen on {address}:{port}: {error.strerror or error}")


def bind(address: str, port: int) -> socket.socket:
    """A listening socket on address:port (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as error:
        sock.close()
        raise cannot_listen(address, port, error) from None
    sock.listen(128)
    return sock


def ensure_free(address: str, port: int) -> None:
    """For a server that binds its own socket later (Flower): refuse now, while it is a plain error."""
    bind(address, port).close()
