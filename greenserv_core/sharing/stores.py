"""Where replicas keep the merged statistics: one narrow interface, three implementations.

:class:`StateStore` has two methods. ``merge(delta)`` adds a replica's change to the shared
total *atomically* and returns the new total; ``read()`` returns the total. Because the
change is merged inside the store (never read, modified and blindly written back), two
replicas writing at once cannot lose each other's updates.

* :class:`InMemoryStore`: threads of one process (and tests).
* :class:`FileStore`: processes of one machine; the default, no server. An exclusive
  ``filelock`` guards a read-merge-write of one file, which is replaced atomically.
* :class:`RedisStore`: processes on many machines, through a Redis server. The merge is an
  optimistic transaction (``WATCH``/``MULTI``/``EXEC``), retried when another replica wrote
  in between. It keeps receipts (:class:`KeepsReceipts`): a change whose reply was lost is
  never sent twice.

>>> import numpy as np
>>> store = InMemoryStore()
>>> store.merge(Statistics(sums={"n": np.array([1.0])})).sums["n"]
array([1.])
>>> store.merge(Statistics(sums={"n": np.array([2.0])})).sums["n"]
array([3.])
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import numpy as np
from filelock import FileLock

from greenserv_core.errors import InvalidInputError, StateFileError
from greenserv_core.log_once import warn_once
from greenserv_core.persistence import write_atomically
from greenserv_core.redaction import redacted
from greenserv_core.statistics import Statistics

if TYPE_CHECKING:
    import redis

__all__ = [
    "FileStore",
    "InMemoryStore",
    "KeepsReceipts",
    "RedisStore",
    "StateStore",
    "client_from_url",
    "redis_address",
    "store_identity",
    "unreachable",
]

logger = logging.getLogger("greenserv")


@runtime_checkable
class StateStore(Protocol):
    """Shared merged statistics. ``merge`` must be atomic with respect to other ``merge`` calls."""

    def merge(self, delta: Statistics) -> Statistics:
        """Add ``delta`` to the shared total and return the new total."""
        ...

    def read(self) -> Statistics:
        """The shared total (empty before the first merge)."""
        ...


@runtime_checkable
class KeepsReceipts(Protocol):
    """A store whose ``merge`` can fail after the store took the change (a reply lost on the
    network). ``merge(delta, receipt=(slot, token))`` records ``token`` in the slot with the
    change, atomically, and ``took((slot, token))`` says later whether it did: a replica whose
    merge failed asks before it sends that change again."""

    def merge(self, delta: Statistics, *, receipt: tuple[str, str] | None = None) -> Statistics: ...

    def took(self, receipt: tuple[str, str]) -> bool: ...


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says that a store could not be reached (a server down or restarting, a
    file system away: ``OSError``, Redis's connection errors and timeouts), not that it is
    misconfigured (Redis refusing the credentials) or refused the state.

    >>> unreachable(ConnectionRefusedError(111, "Connection refused")), unreachable(StateFileError("corrupt"))
    (True, False)
    """
    if isinstance(error, OSError):
        return True
    try:
        from redis import exceptions
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    refused = (exceptions.AuthenticationError, exceptions.AuthorizationError)
    return isinstance(error, (exceptions.ConnectionError, exceptions.TimeoutError)) and not isinstance(error, refused)


def store_identity(store: StateStore) -> str:
    """A name for where ``store`` keeps the total, the same for every object that reaches the
    same total (its ``identity`` attribute where it has one), so that a router's sync base
    (:meth:`~greenserv_core.GreenServRouter.sync_base`) is used only with the store it came from.
    A store without one is named for as long as the object lives (never after it, whatever
    takes its place in memory): a replica restarted from a saved router cannot find what it
    took from such a store, and pushes it again (said once per store class).

    >>> store_identity(FileStore("/tmp/pool.gss")) == store_identity(FileStore("/tmp/../tmp/pool.gss"))
    True
    >>> store_identity(InMemoryStore()) == store_identity(InMemoryStore())
    False
    """
    identity = getattr(store, "identity", None)
    if identity is not None:
        return str(identity)
    kind = type(store).__qualname__
    with _NAMES_LOCK:
        warn_once(
            logger,
            "the store %s has no `identity`: it is named for this process only, so a replica restarted "
            "from a saved router pushes again what it took from it; give the store class an `identity` "
            "(the same for every object that reaches the same total) to restart safely",
            kind,
        )
        key = id(store)
        name = _NAMES.get(key)
        if name is None:
            name = f"{kind}:{uuid.uuid4().hex}"
            try:  # forgotten with the object: another one allocated at its address is another store
                weakref.finalize(store, _NAMES.pop, key, None).atexit = False
            except TypeError:  # an object without weak references keeps its name itself, or is named by address
                try:
                    return str(vars(store).setdefault("_greenserv_identity", name))
                except TypeError:
                    return f"{kind}:{key:x}"
            _NAMES[key] = name
        return name


_NAMES: dict[int, str] = {}
"""The names of live stores without an ``identity``, by address."""
_NAMES_LOCK = threading.Lock()


class InMemoryStore:
    """A store inside one process, for threads and tests (:attr:`identity`: a name of its own)."""

    def __init__(self) -> None:
        self._total = Statistics()
        self._lock = threading.Lock()
        self.identity = f"memory:{uuid.uuid4().hex}"

    def merge(self, delta: Statistics) -> Statistics:
        with self._lock:
            self._total = self._total.plus(delta)
            return self._total

    def read(self) -> Statistics:
        with self._lock:
            return self._total


class FileStore:
    """A store in one file, for processes of one machine (a lock file beside it serialises
    merges; through a symbolic link, beside the file it names, so that every name of it shares
    one lock).

    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "router.stats"
    >>> _ = FileStore(path).merge(Statistics(sums={"n": np.array([4.0])}))
    >>> FileStore(path).read().sums["n"]
    array([4.])
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        # the file a link names, once: a merge replaces that file (not the link), and every
        # name of it takes the same lock
        self._file = Path(os.path.realpath(self.path))
        if self._file.is_dir():
            raise InvalidInputError(f"FileStore needs the path of a file, and {str(self.path)!r} is a folder")
        # (its folder is made by the first read or merge: a file system away now is a store
        # unreachable for a while, which SharedLearning.start rides out)
        self._lock = FileLock(str(self._file) + ".lock", timeout=timeout_s)

    @property
    def identity(self) -> str:
        return f"file:{self._file}"

    def _read_unlocked(self) -> Statistics:
        try:
            data = self._file.read_bytes()
        except FileNotFoundError:
            return Statistics()
        return Statistics.from_bytes(data)

    def read(self) -> Statistics:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            return self._read_unlocked()

    def merge(self, delta: Statistics) -> Statistics:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            total = self._read_unlocked().plus(delta)
            write_atomically(self._file, total.to_bytes())
            return total


class RedisStore:
    """A store in one Redis key, merged with optimistic transactions.

    ``client`` is a ``redis.Redis`` (or give ``url``, e.g. ``redis://localhost:6379/0``);
    ``key`` names the shared state. The default, ``greenserv:statistics``, is one key for
    every pool on the server: where several pools share a server, give each its own key
    (``key="greenserv:statistics:pool-a"``, the same in every replica of the pool, whatever
    models a canary adds). Pools merged into one key mix what they learned: the step count,
    the energy range of each task type (one pool's joules rescale the other's rewards) and
    the push count.

    A router remembers what it took from a store under the store's :attr:`identity`: the
    server's address (``localhost``, ``127.0.0.1`` and ``::1`` are one), its database and the
    key. Where replicas reach one server under several names (a DNS alias, a service name),
    give the store one name yourself, ``identity="..."``, so that a replica restarted under
    another address finds what it took and pushes nothing twice.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        key: str = "greenserv:statistics",
        max_attempts: int = 1000,
        identity: str | None = None,
    ) -> None:
        if (client is None) == (url is None):
            raise InvalidInputError("give exactly one of client= or url=")
        if identity is not None and (not isinstance(identity, str) or not identity.strip()):
            raise InvalidInputError(f"identity must be a non-empty string, got {identity!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, (int, np.integer)) or max_attempts < 1:
            raise InvalidInputError(f"max_attempts must be an integer of 1 or more, got {max_attempts!r}")
        max_attempts = int(max_attempts)  # (numpy's too)
        if client is None:
            try:
                import redis as redis_module
            except ImportError as error:  # pragma: no cover - depends on the environment
                raise InvalidInputError(
                    "RedisStore needs the redis package: pip install 'greenserv[remote]'"
                ) from error
            client = client_from_url(redis_module, str(url))
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise InvalidInputError(
                "RedisStore keeps bytes: give it a client made with decode_responses=False (redis-py's default)"
            )
        self.client = client
        self.key = key
        self.max_attempts = max_attempts
        self.given_identity = identity
        self.conflicts_ = 0  # transactions retried because another replica wrote first

    @property
    def identity(self) -> str:
        """``identity=`` as given, else ``redis:<server>/<db>#<key>`` (a loopback address is
        ``loopback``)."""
        if self.given_identity is not None:
            return f"redis:{self.given_identity}#{self.key}"
        return self._address_identity(canonical=True)

    @property
    def former_identities(self) -> tuple[str, ...]:
        """The names this store had before (a router saved then remembers its sync base under
        one): its address as written, from before loopback addresses were made one; given an
        ``identity=``, also its address as :attr:`identity` names it without one.

        >>> RedisStore(url="redis://127.0.0.1:6379/0", key="k", identity="pool-a").former_identities
        ('redis:loopback:6379/0#k', 'redis:127.0.0.1:6379/0#k')
        """
        names = [self._address_identity(canonical=False)]
        if self.given_identity is not None:
            names.insert(0, self._address_identity(canonical=True))
        return tuple(name for name in dict.fromkeys(names) if name != self.identity)

    def _address_identity(self, *, canonical: bool) -> str:
        return f"redis:{redis_address(self.client, canonical=canonical)}#{self.key}"

    def read(self) -> Statistics:
        data = self.client.get(self.key)
        return Statistics() if data is None else Statistics.from_bytes(_as_bytes(data))

    def merge(
        self, delta: Statistics, *, receipt: tuple[str, str] | None = None, note: Sequence[str] = ()
    ) -> Statistics:
        """Add ``delta`` to the total in one transaction; with a ``receipt`` (see
        :class:`KeepsReceipts`), also record its token, for :meth:`took` to find, and the new
        total's sums under the keys ``note`` names, for :meth:`noted`."""
        import redis as redis_module

        # each write also sets a marker of its own: a reply lost on the way back (a timeout, a
        # dropped connection: redis-py may report it as a conflict) is told from a conflict by
        # it, so a change the store took is never added again; a retry watches the marker too
        # and looks for it first: a transaction that the server ran late (after the check
        # below) is found there, or makes this one fail
        if receipt is None:
            marker, token, ttl = f"{self.key}:merged:{uuid.uuid4().hex}", b"1", _MARKER_TTL_S
        else:
            marker, token, ttl = self._slot(receipt[0]), receipt[1].encode(), _RECEIPT_TTL_S
        with self.client.pipeline() as pipe:
            for attempt in range(self.max_attempts):
                try:
                    pipe.watch(self.key, marker)  # type: ignore[no-untyped-call]
                    went_through = attempt > 0 and _token_of(pipe.get(marker)) == token
                    data = pipe.get(self.key)  # (after the marker: a total that holds this change, if it is there)
                    stored = Statistics() if data is None else Statistics.from_bytes(_as_bytes(data))
                    if went_through:
                        return stored
                    total = stored.plus(delta)
                    written = token
                    if receipt is not None and note:
                        counts = {key: float(total.sums[key][0]) for key in note if key in total.sums}
                        written = token + b"\n" + json.dumps(counts).encode()
                    pipe.multi()
                    pipe.set(self.key, total.to_bytes())
                    pipe.set(marker, written, ex=ttl)
                    pipe.execute()
                    return total
                except (redis_module.WatchError, redis_module.ConnectionError, redis_module.TimeoutError):
                    if _token_of(self.client.get(marker)) == token:  # it went through: the store holds this change
                        return self.read()
                    self.conflicts_ += 1
                    continue
        raise StateFileError(f"could not merge into {self.key!r}: {self.max_attempts} attempts met concurrent writes")

    def took(self, receipt: tuple[str, str]) -> bool:
        """Whether a merge with ``receipt`` went through (as long as its slot is kept: a week)."""
        return _token_of(self.client.get(self._slot(receipt[0]))) == receipt[1].encode()

    def noted(self, receipt: tuple[str, str]) -> dict[str, float] | None:
        """The sums a merge with ``receipt`` noted (its ``note``) as that merge left them;
        ``None`` where it did not go through (or noted nothing)."""
        value = self.client.get(self._slot(receipt[0]))
        if value is None or _token_of(value) != receipt[1].encode():
            return None
        _, _, counts = _as_bytes(value).partition(b"\n")
        return {str(k): float(v) for k, v in json.loads(counts).items()} if counts else None

    def _slot(self, slot: str) -> str:
        return f"{self.key}:receipt:{slot}"


def _token_of(value: object) -> bytes | None:
    """A merge marker's or receipt's token (what it holds before the counts it noted, if any)."""
    return None if value is None else _as_bytes(value).partition(b"\n")[0]


_MARKER_TTL_S = 3600
"""How long a merge's marker is kept (long past any retry of that merge)."""
_RECEIPT_TTL_S = 7 * 24 * 3600
"""How long a replica's receipt is kept: its next sync may come after a long outage."""

_LOOPBACK = "loopback"


def redis_address(client: Any, *, canonical: bool = False) -> str:
    """The server and database a Redis ``client`` talks to, ``<host>:<port>/<db>`` (or its
    socket's path), without credentials; ``canonical``: a loopback host written one way and
    names in lower case, as a store's identity takes them.

    >>> import redis
    >>> client, local = redis.Redis.from_url("redis://user:pw@127.0.0.1:6380/2"), redis.Redis(port=6380, db=2)
    >>> redis_address(client), redis_address(client, canonical=True) == redis_address(local, canonical=True)
    ('127.0.0.1:6380/2', True)
    """
    where = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    host = str(where.get("host", "localhost"))
    if canonical:
        host = _LOOPBACK if _is_loopback(host) else host.lower()
    server = where.get("path") or f"{host}:{where.get('port', 6379)}"
    return f"{server}/{where.get('db', 0)}"


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.1``, ``::1``)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def client_from_url(redis_module: Any, url: str, who: str = "RedisStore") -> redis.Redis:
    """``redis.Redis.from_url(url)``; a URL that cannot name a server and database is
    :class:`InvalidInputError` naming ``who`` took it (an address that is well formed but does
    not answer yet is not: its replicas start on their own state and sync once it answers).

    >>> import redis
    >>> try:
    ...     client_from_url(redis, "redis://redis-host:6379/pool-a")
    ... except InvalidInputError as error:
    ...     print(str(error).partition(": ")[2])
    the database after the address must be a number, e.g. redis://redis-host:6379/0
    """
    said, example = f"{who} url {redacted(repr(url))}", "e.g. redis://redis-host:6379/0"
    try:
        client = redis_module.Redis.from_url(url)
    except ValueError as error:
        raise InvalidInputError(f"{said}: {redacted(str(error))}; {example}") from None  # (it may quote a key)
    parts = urlsplit(url)  # (the scheme in any case, as redis-py reads it)
    database = parts.path.strip("/")
    if parts.scheme.lower() in ("redis", "rediss") and database and not database.isdigit():
        raise InvalidInputError(f"{said}: the database after the address must be a number, {example}")
    return client  # type: ignore[no-any-return]


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    raise StateFileError(f"the Redis value is {type(data).__name__}, not bytes (use decode_responses=False)")
