"""Pending decisions in Redis, so that feedback may reach any router replica.

Behind a load balancer, the request that scores an answer may land on another replica than
the one that routed it. With :class:`RedisPendingDecisions` as every replica's ``pending``
store, the replica that receives the feedback takes the decision out of Redis (atomically:
a decision is scored once, whichever replicas race for it) and learns from it; with
:class:`~greenserv_core.sharing.SharedLearning` the others learn it at their next sync.

Decisions expire after ``ttl_s`` (Redis key expiry); ids that were scored or abandoned are
remembered as long, for precise errors.

Every decision is written to Redis before its model runs, so while Redis cannot be reached (or
refuses a write) answers and feedback fail with
:class:`~greenserv_core.errors.PendingStoreUnreachableError` (a
:class:`~greenserv_core.errors.MissingResourceError`), which names the server (without its
credentials); no model runs for a decision that could not be recorded. If Redis goes away
while a model answers, the answer is still returned and its joules counted by the router
that ran it; only its score is lost.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from greenserv_core.bandits.base import check_number
from greenserv_core.errors import (
    DecisionAlreadyScoredError,
    DecisionIdInUseError,
    InvalidInputError,
    PendingStoreUnreachableError,
    UnknownDecisionError,
)
from greenserv_core.pending import PendingDecision
from greenserv_core.redaction import redacted
from greenserv_core.sharing.stores import client_from_url, redis_address, unreachable

if TYPE_CHECKING:
    import redis

__all__ = ["RedisPendingDecisions"]

_T = TypeVar("_T")

# a call's receipt of what it took (its token, then the value), and the value it took, where the
# receipt is that token's (the same call sent again); the scripts that take a decision begin so
_RECEIPTS = """
local function keep_receipt(key, token, value, seconds)
  redis.call('SET', key, token .. ' ' .. value, 'EX', seconds)
end
local function from_receipt(key, token)
  local receipt = redis.call('GET', key)
  if receipt and string.sub(receipt, 1, string.len(token) + 1) == token .. ' ' then
    return string.sub(receipt, string.len(token) + 2)
  end
  return nil
end
"""
# take a decision out and remember it as scored, in one step; one whose outcome is not
# recorded yet is kept aside (KEYS[3]) for the outcome. The call's token (ARGV[2]) marks what it
# took, kept a while under KEYS[4] (a receipt): the same call sent again (its reply was lost) gets
# the decision again, not "already scored". A decision of a release that kept a decision scored
# before its outcome in place, with its "score", is scored: it is set aside as one is now.
_POP = (
    _RECEIPTS
    + """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('DEL', KEYS[1])
  local decision = cjson.decode(value)
  redis.call('SET', KEYS[2], 'scored', 'EX', ARGV[1])
  if decision['energy_joules'] == cjson.null then
    redis.call('SET', KEYS[3], value, 'EX', ARGV[1])
  end
  if decision['score'] ~= nil and decision['score'] ~= cjson.null then
    return {0, 'scored'}
  end
  keep_receipt(KEYS[4], ARGV[2], value, ARGV[3])
  return {1, value}
end
local taken = from_receipt(KEYS[4], ARGV[2])
if taken then
  return {1, taken}
end
return {0, redis.call('GET', KEYS[2])}
"""
)
# take the copy awaiting its outcome; the call's token (ARGV[1]) keeps a receipt under KEYS[2]
_TAKE = (
    _RECEIPTS
    + """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('DEL', KEYS[1])
  keep_receipt(KEYS[2], ARGV[1], value, ARGV[2])
  return value
end
return from_receipt(KEYS[2], ARGV[1])
"""
)
_RECEIPT_S = 300
"""How long a receipt of a taken decision is kept for the same call sent again."""
_KEEP = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], 'scored', 'EX', ARGV[2])
return 0
"""
_PUT_BACK = """
local value = redis.call('GET', KEYS[3])
if not value then
  if ARGV[3] == '1' then
    return 0
  end
  value = ARGV[1]
end
redis.call('SET', KEYS[1], value, 'EX', ARGV[2])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""
_DISCARD = """
if redis.call('DEL', KEYS[1]) == 1 and ARGV[2] == '0' then
  redis.call('SET', KEYS[2], 'abandoned', 'EX', ARGV[1])
end
return 0
"""


def _encode(decision: PendingDecision) -> str:
    return json.dumps(decision.to_dict())


def _decode(data: bytes | str) -> PendingDecision:
    return PendingDecision.from_dict(json.loads(data))


def _same(stored: object, value: str) -> bool:
    """Whether ``stored`` (a Redis reply) is ``value``."""
    return (stored.decode() if isinstance(stored, bytes) else stored) == value


def _literal(text: str) -> str:
    """``text`` as a Redis ``MATCH`` pattern that matches it alone (its glob characters escaped).

    >>> print(_literal("pool[a]*?"))
    pool\\[a\\]\\*\\?
    """
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


class RedisPendingDecisions:
    """A :class:`~greenserv_core.pending.PendingStore` in Redis (keys ``<prefix>:d:<id>`` for
    pending decisions, ``<prefix>:g:<id>`` for ids that are gone and why, ``<prefix>:a:<id>``
    for decisions scored before their outcome, which wait for it, and ``<prefix>:r:<id>`` and
    ``<prefix>:t:<id>`` for five minutes' receipts of what a call took).

    A command whose reply is lost (a connection broken or timed out after Redis ran it) is
    sent once more, by this store (and by redis-py's own retries, where the client has them),
    and finds its own work done: a decision written, a decision taken for its score or its
    outcome is that call's still, never "in use", "already scored" or "already recorded".

    The ``prefix`` names the deployment's decisions: the default, ``greenserv:pending``, is one
    namespace for every pool on the server. Where several pools or deployments share a server,
    give each its own prefix (``prefix="greenserv:pending:pool-a"``, the same in every replica of
    the pool), as with :class:`~greenserv_core.sharing.RedisStore`'s ``key``: pools that share a
    prefix share their decision ids, and a score sent to one may take (and teach) the other's
    decision. A ``url`` is read as :class:`~greenserv_core.sharing.RedisStore` reads it (its
    database a number)."""

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        prefix: str = "greenserv:pending",
        ttl_s: float = 7 * 24 * 3600.0,
    ) -> None:
        if (client is None) == (url is None):
            raise InvalidInputError("give exactly one of client= or url=")
        ttl_s = check_number("ttl_s", ttl_s, low=1.0)  # at least one second
        if client is None:
            import redis as redis_module

            client = client_from_url(redis_module, str(url), "RedisPendingDecisions")
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._ttl = max(1, round(ttl_s))
        self._pop = client.register_script(_POP)
        self._take = client.register_script(_TAKE)
        self._discard = client.register_script(_DISCARD)
        self._keep = client.register_script(_KEEP)
        self._put_back = client.register_script(_PUT_BACK)

    @contextlib.contextmanager
    def _redis(self, doing: str) -> Iterator[None]:
        """Redis's errors in the block, as :class:`PendingStoreUnreachableError` saying what failed
        (``doing``), where, and that this store's router needs Redis to answer."""
        from redis.exceptions import RedisError

        try:
            yield
        except RedisError as error:
            address = redacted(redis_address(self.client))
            what = "cannot be reached" if unreachable(error) else "refused it"
            raise PendingStoreUnreachableError(
                f"could not {doing}: Redis at {address} {what} "
                f"({type(error).__name__}: {redacted(str(error))}). This router keeps its pending decisions in Redis "
                "(RedisPendingDecisions), so it neither answers nor takes feedback until Redis does: start Redis or "
                "correct its address, then try again"
            ) from error

    def _again(self, call: Callable[[], _T]) -> _T:
        """``call()``, sent once more where its reply was lost (a connection that broke or timed
        out: the command may have run); the calls sent so are the same each time (a decision
        written whole, a take with its token), so the second finds what the first did."""
        from redis.exceptions import ConnectionError as LostConnection
        from redis.exceptions import TimeoutError as LostReply

        try:
            return call()
        except (LostConnection, LostReply):
            return call()

    def _key(self, decision_id: str) -> str:
        return f"{self.prefix}:d:{decision_id}"

    def _gone(self, decision_id: str) -> str:
        return f"{self.prefix}:g:{decision_id}"

    def _awaiting(self, decision_id: str) -> str:
        return f"{self.prefix}:a:{decision_id}"

    def _receipt(self, decision_id: str, kind: str = "r") -> str:
        return f"{self.prefix}:{kind}:{decision_id}"

    def __len__(self) -> int:
        with self._redis("count the pending decisions"):
            return sum(1 for _ in self.client.scan_iter(match=f"{_literal(self.prefix)}:d:*", count=1000))

    def add(self, decision: PendingDecision) -> None:
        # marked as this call's write: the same call sent again finds its own, another add of the
        # same decision does not
        key, value = self._key(decision.decision_id), json.dumps({**decision.to_dict(), "write": uuid.uuid4().hex})

        def write() -> bool:  # (this very write there already: this call's own, its reply lost)
            return bool(self.client.set(key, value, ex=self._ttl, nx=True)) or _same(self.client.get(key), value)

        with self._redis(f"record decision {decision.decision_id!r}"):
            added = self._again(write)
        if not added:
            raise DecisionIdInUseError(decision.decision_id)

    def known(self, decision_id: str) -> bool:
        with self._redis(f"look up decision id {decision_id!r}"):
            return bool(self.client.exists(self._key(decision_id), self._gone(decision_id)))

    def get(self, decision_id: str) -> PendingDecision:
        with self._redis(f"read decision {decision_id!r}"):
            data = self.client.get(self._key(decision_id))
            why = self.client.get(self._gone(decision_id)) if data is None else None
        if data is None:
            self._raise_gone(decision_id, why)
        item = json.loads(data)  # type: ignore[arg-type]
        if item.get("score") is not None:  # a previous release's, scored before its outcome: set aside as now
            with self._redis(f"set decision {decision_id!r} aside for its outcome"):
                self._popped(decision_id)
            self._raise_gone(decision_id, "scored")
        return PendingDecision.from_dict(item)

    def update(self, decision: PendingDecision) -> None:
        """Store a changed decision. One that another replica scored meanwhile is changed where it
        awaits its outcome, as the in-process store's one shared object is (a repeated outcome is
        then refused); one gone is left gone. (Each write only where its key is: a decision taken
        out is put back only from its waiting copy, with what was written there, so the two act as
        one step.)"""
        value = _encode(decision)
        with self._redis(f"record the outcome of decision {decision.decision_id!r}"):
            if not self.client.set(self._key(decision.decision_id), value, xx=True, keepttl=True):
                self.client.set(self._awaiting(decision.decision_id), value, xx=True, keepttl=True)

    def pop_for_feedback(self, decision_id: str) -> PendingDecision:
        with self._redis(f"take decision {decision_id!r} for its feedback"):
            found, value = self._popped(decision_id)
        if not found:
            self._raise_gone(decision_id, value)
        return _decode(value)

    def _popped(self, decision_id: str) -> tuple[int, Any]:
        """Run :data:`_POP` for ``decision_id`` under a token of its own (sent again where its
        reply was lost): ``(1, the decision taken)``, or ``(0, why it is gone)``."""
        keys = [self._key(decision_id), self._gone(decision_id), self._awaiting(decision_id)]
        keys.append(self._receipt(decision_id))
        token = uuid.uuid4().hex
        found, value = self._again(lambda: self._pop(keys=keys, args=[self._ttl, token, _RECEIPT_S]))
        return found, value

    def take_awaiting(self, decision_id: str) -> PendingDecision | None:
        keys, token = [self._awaiting(decision_id), self._receipt(decision_id, "t")], uuid.uuid4().hex
        with self._redis(f"take decision {decision_id!r} for its outcome"):
            value = self._again(lambda: self._take(keys=keys, args=[token, _RECEIPT_S]))
        return None if value is None else _decode(value)

    def put_back(self, decision: PendingDecision) -> bool:
        """Make a decision taken for its feedback pending again (its score could not be learned),
        for another ``ttl_s``, as its waiting copy holds it where it has one (an outcome another
        replica recorded meanwhile is kept); its "scored" mark goes. One whose waiting copy was
        taken meanwhile (its outcome learned) stays scored: returns ``False``."""
        decision_id = decision.decision_id
        keys = [self._key(decision_id), self._gone(decision_id), self._awaiting(decision_id)]
        awaited = "1" if decision.energy_joules is None else "0"  # pop_for_feedback left a waiting copy
        with self._redis(f"put decision {decision_id!r} back"):
            return bool(self._put_back(keys=keys, args=[_encode(decision), self._ttl, awaited]))

    def keep_awaiting(self, decision: PendingDecision) -> None:
        """Keep a scored decision waiting for its outcome another ``ttl_s``, and its "scored"
        mark with it (alone, the mark expired first: the outcome was refused as unknown, and
        the id could be routed again beside a stale waiting copy)."""
        keys = [self._awaiting(decision.decision_id), self._gone(decision.decision_id)]
        with self._redis(f"keep decision {decision.decision_id!r} for its outcome"):
            self._keep(keys=keys, args=[_encode(decision), self._ttl])

    def discard(self, decision_id: str, *, reusable: bool = False) -> None:
        with self._redis(f"discard decision {decision_id!r}"):
            self._discard(keys=[self._key(decision_id), self._gone(decision_id)], args=[self._ttl, int(reusable)])

    def _raise_gone(self, decision_id: str, why: Any) -> None:
        why = why.decode() if isinstance(why, bytes) else why
        if why == "scored":
            raise DecisionAlreadyScoredError(
                f"decision {decision_id!r} already received feedback; a second score is refused"
            )
        if why == "abandoned":
            raise UnknownDecisionError(
                f"decision {decision_id!r} has no answer to score: its generation failed or its stream was not finished"
            )
        raise UnknownDecisionError(
            f"unknown or expired decision id {decision_id!r} (decisions are kept {self.ttl_s:g} s)"
        )

    def state_dict(self) -> dict[str, Any]:
        """Only the settings: the decisions themselves live in Redis, and a router loaded with
        the same store (``GreenServRouter.load(..., pending=store)``) finds them there. There
        is no size limit: Redis drops decisions after ``ttl_s``."""
        return {"store": "redis", "prefix": self.prefix, "max_size": None, "ttl_s": self.ttl_s, "items": [], "gone": {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to load: the decisions live in Redis."""
