"""The broker transport survives the clean-up celery's consumer does after losing the broker.

celery 5.7's consumer, on a lost broker connection, calls `Connection.collect()` and then
`Connection.close()`. These tests drive a kombu connection on a real Redis into the state of an idle
worker holding a countdown message (one message unacknowledged, a BRPOP pending on each of two
channels), kill the Redis, and make the same two calls.
"""

from __future__ import annotations

import socket

import pytest
from kombu import Connection, Consumer, Message, Queue
from kombu.common import ignore_errors
from kombu.transport import redis as kombu_redis

from orchestrator.adapters.broker import redis_transport
from tests.chaos.conftest import KillableRedis


def _idle_worker_holding_a_message(broker: KillableRedis, transport: type[kombu_redis.Transport]) -> Connection:
    connection = Connection(broker.url, transport=transport)
    channel = connection.default_channel
    assert isinstance(channel, kombu_redis.Channel)  # the virtual transport's channel, which publishes
    channel.basic_publish(channel.prepare_message('{"run_id": "r"}'), exchange="", routing_key="held")
    held: list[Message] = []
    Consumer(channel, [Queue("held")], callbacks=[lambda _body, message: held.append(message)]).consume()
    Consumer(connection.channel(), [Queue("idle")]).consume()
    connection.drain_events(timeout=2)
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=0.2)  # leaves both BRPOPs in flight
    assert len(held) == 1
    return connection


def test_a_lost_broker_is_cleaned_up_like_any_connection_error(broker: KillableRedis) -> None:
    connection = _idle_worker_holding_a_message(broker, redis_transport.Transport)

    broker.kill()
    connection.collect()
    ignore_errors(connection, connection.close)  # no AttributeError: the consumer reconnects


def test_kombu_itself_still_fails_here(broker: KillableRedis) -> None:
    """When this fails, kombu has fixed it: drop orchestrator/adapters/broker/redis_transport.py and this test."""
    connection = _idle_worker_holding_a_message(broker, kombu_redis.Transport)

    broker.kill()
    connection.collect()
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'hostname'"):
        ignore_errors(connection, connection.close)


def test_every_redis_broker_url_gets_the_fixed_transport() -> None:
    redis_transport.install()
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "redis+socket:///tmp/rebill.sock"):
        assert isinstance(Connection(url).transport, redis_transport.Transport), url
