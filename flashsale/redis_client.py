"""Django's Redis cache client, minus a client object per cache call and a pool per cache object.

`django.core.cache.backends.redis.RedisCacheClient.get_client` builds a new `redis.Redis` for every
get/set. redis-py's constructor fills a table of ~170 response callbacks and an event dispatcher
each time: profiled at about 0.6 ms per cache call here, several times the Redis round trip itself,
on every rate-limit check, token lookup and sale-gate check. A `redis.Redis` is thread-safe (each
command borrows a connection from the pool), so one per connection pool is enough.

The pool, too, is one per process (per server and options), not one per cache object. Django keeps
a cache object per thread and, under asyncio, per task context (asgiref's `Local`): every WebSocket
consumer is a task of its own, and its first cache read (the unknown-sale check, the connect rate
limit) built a cache object with a pool that then held one Redis connection open for as long as the
socket lived. Measured on one Daphne process: 500 sockets, 502 Redis connections, and about half of
the ~55 KiB of memory each socket cost (docs/cluster.md "WebSocket fan-out across the cluster").
redis-py's pool is thread-safe and resets itself in a forked child, so sharing it is safe.
"""

import threading

from django.core.cache.backends.redis import RedisCacheClient

_shared: dict[tuple, tuple] = {}  # (pool class, server, options) -> (pool, redis.Redis)
_shared_lock = threading.Lock()


class ReusingRedisCacheClient(RedisCacheClient):
    def get_client(self, key=None, *, write=False):
        server = self._servers[self._get_connection_pool_index(write)]
        options = tuple(sorted((name, repr(value)) for name, value in self._pool_options.items()))
        shared_key = (self._pool_class, server, options)
        found = _shared.get(shared_key)
        if found is None:
            with _shared_lock:
                found = _shared.get(shared_key)
                if found is None:
                    pool = self._pool_class.from_url(server, **self._pool_options)
                    found = _shared[shared_key] = (pool, self._client(connection_pool=pool))
        return found[1]
