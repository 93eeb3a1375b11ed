"""The Redis channel layer as configured for several web processes: a consumer that hears
nothing for a while (most calls, most of the time) must keep listening."""

import asyncio
import os

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from voiceagents.settings import redis_channel_layer

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.fail("TEST_REDIS_URL is not set: run the suite with scripts/test")
    return url


async def test_a_quiet_consumer_keeps_listening_past_the_blocking_pop(redis_url):
    layer = RedisChannelLayer(**redis_channel_layer(redis_url)["CONFIG"])
    channel = await layer.new_channel()
    quiet_s = RedisChannelLayer.brpop_timeout + 2
    try:
        with pytest.raises(TimeoutError) as waited:
            await asyncio.wait_for(layer.receive(channel), quiet_s)
        # Our own deadline ended the wait, not a Redis read timeout.
        assert not isinstance(waited.value, redis.RedisError)

        await layer.send(channel, {"type": "call.hangup", "by": "staff"})
        assert await asyncio.wait_for(layer.receive(channel), 5) == {
            "type": "call.hangup",
            "by": "staff",
        }
    finally:
        await layer.flush()
