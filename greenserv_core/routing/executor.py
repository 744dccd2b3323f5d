"""Running a routed query on its model: one failover helper for ``generate``, ``stream`` and
``generate_batch``, and the step that turns a model's result into a :class:`RoutedGeneration`.

A model that fails with :class:`ModelUnavailableError` (a remote server down, timed out or
cooling down) is left out and the query is routed again among the other eligible models,
under the same decision id. Any other error drops the decision (no feedback) and propagates;
what the model spent before it is charged where it is known (as a failed attempt's). A stream
is routed around only until its first piece: text already handed out is never taken back.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from greenserv_core.async_bridge import caller_left, current_delivery
from greenserv_core.backends.abandoned import SpentReading, collecting_abandoned
from greenserv_core.backends.base import (
    GenerationResult,
    ModelBackend,
    StreamChunk,
    batch_generator,
    concurrency_of,
    next_piece,
)
from greenserv_core.cascades import CascadeBackend, Escalate, Verdict
from greenserv_core.errors import (
    BatchItemsUnavailableError,
    CascadeMemberUnavailableError,
    DecisionAlreadyScoredError,
    InvalidInputError,
    ModelUnavailableError,
    PendingStoreUnreachableError,
    UnknownDecisionError,
    UnknownModelError,
    readable_spend,
    spent_by,
)
from greenserv_core.features.extractor import QueryFeatures
from greenserv_core.routing.learner import RoutingLearner, check_spent
from greenserv_core.routing.request import RouteRequest
from greenserv_core.routing.results import FailedAttempt, RoutedChunk, RoutedGeneration, RoutingDecision
from greenserv_core.tools import ParsedOutput, parse_tool_calls

__all__ = ["Executor", "LearnedEscalation", "RouteFunction"]

logger = logging.getLogger("greenserv")

_CUT_AT = 0.95
"""An answer that ends with finish reason ``length`` after this share of its ``max_time_s``,
short of its ``max_new_tokens``, is taken as cut by its time limit (its seconds a lower bound
for the latency model)."""

T = TypeVar("T")

RouteFunction = Callable[[RouteRequest, Mapping[str, str], "str | None", "QueryFeatures | None"], RoutingDecision]
"""Routes a request, leaving out the models that already failed it, under a decision id (with
the query's features when they were extracted for an earlier attempt)."""


class Executor:
    """Runs requests on the models that ``route`` chooses; ``backend`` looks a model up by name."""

    def __init__(
        self,
        route: RouteFunction,
        backend: Callable[[str], ModelBackend],
        learner: RoutingLearner,
        forget: Callable[[RouteRequest, QueryFeatures], None] | None = None,
    ) -> None:
        self.route = route
        self.backend = backend
        self.learner = learner
        self.forget = forget
        """Takes back what a query's features taught the clustering (a batch's query withdrawn unrun)."""

    def with_failover(
        self,
        request: RouteRequest,
        attempt: Callable[[RoutingDecision], T],
        *,
        decision: RoutingDecision | None = None,
        failure: ModelUnavailableError | None = None,
        failures: list[FailedAttempt] | None = None,
    ) -> T:
        """``attempt(decision)`` until a model does not fail with :class:`ModelUnavailableError`.

        ``decision`` is a decision already made for ``request`` (routed now when ``None``);
        ``failure`` says that its model already failed. What each failed attempt spent is
        charged when it fails (the model's tally and the energy budget: the query cost that
        much more, whether or not another model answers), and the attempt is added to
        ``failures`` (see :meth:`settle`); so is what an attempt that fails with another error
        reports it spent (:func:`~greenserv_core.backends.abandoned.report_abandoned`, as a
        cascade's first answer does). The query's features are extracted once, and its
        decision id stays reserved while it is routed again."""
        failed: dict[str, str] = {}
        decision_id = request.decision_id
        features: QueryFeatures | None = None
        while True:
            if decision is not None and failure is not None:
                self.learner.fail_over(decision)
                attempt_failed = self._charge(decision, failure)
                failed[decision.model] = str(failure)
                if failures is not None:
                    failures.append(attempt_failed)
                if isinstance(failure, CascadeMemberUnavailableError):  # no other cascade through that model
                    failed[failure.member] = str(failure)
                then = (  # (once the caller left, no model is tried again: below)
                    "the caller had left, so no other model is tried"
                    if caller_left()
                    else "routing the query to another model"
                )
                logger.warning("%s failed (%s); %s", decision.model, failure, then)
                decision_id, features, decision, failure = decision.decision_id, decision.features, None, None
            if decision is None:
                try:
                    if (delivery := current_delivery()) is not None:
                        delivery.check()  # the caller left: no model is tried (again)
                    decision = self.route(request, failed, decision_id, features)
                except BaseException:
                    if failed and decision_id is not None:
                        self.learner.release(decision_id)  # no model left: the id is not routed again
                    raise
            with collecting_abandoned() as spent:
                try:
                    result = attempt(decision)
                except ModelUnavailableError as error:  # (still answering: scores wait for the next model's)
                    failure = error
                except BaseException:
                    self.learner.drop(decision.decision_id)
                    self._charge_collected(decision.model, spent)
                    raise
                else:
                    self.learner.answered(decision.decision_id)  # its first piece, or all of it, came
                    return result

    # ---- the three ways to run a query -------------------------------------------------------
    def generate(self, request: RouteRequest) -> RoutedGeneration:
        failures: list[FailedAttempt] = []
        generation = self.with_failover(
            request, lambda decision: self._generate_once(request, decision), failures=failures
        )
        return self.settle(generation, failures)

    def _charge(self, decision: RoutingDecision, error: ModelUnavailableError) -> FailedAttempt:
        """Charge what a failed attempt spent (its model's tally and the energy budget)."""
        attempt = FailedAttempt.of(decision.model, error)
        self.learner.charge_failed([(attempt.model, attempt.energy_joules)])
        return attempt

    def settle(self, generation: RoutedGeneration, failures: Sequence[FailedAttempt]) -> RoutedGeneration:
        """List the failed attempts on the answer (what they spent was charged as they failed)."""
        if not failures:
            return generation
        return dataclasses.replace(generation, failed_attempts=tuple(failures))

    def stream(self, request: RouteRequest) -> Iterator[RoutedChunk]:
        def first_piece(decision: RoutingDecision) -> tuple[RoutingDecision, Iterator[StreamChunk], StreamChunk]:
            backend = self._backend_of(decision)
            if isinstance(backend, CascadeBackend):
                escalate = self._escalation(decision, backend)
                pieces = iter(backend.stream(request.messages, request.settings, escalate))
            else:
                pieces = iter(backend.stream(request.messages, request.settings))
            return decision, pieces, next_piece(pieces, decision.model)

        failures: list[FailedAttempt] = []
        decision, pieces, chunk = self.with_failover(request, first_piece, failures=failures)
        finished = False
        try:
            try:
                while chunk.result is None:
                    yield RoutedChunk(chunk.delta, decision)
                    chunk = self._next_piece(decision, pieces)
            except ModelUnavailableError as error:  # mid-stream: no failover, but what it spent is charged
                self._charge(decision, error)
                raise
            generation = self.settle(self.finish(decision, chunk.result, request), failures)
            finished = True
            yield RoutedChunk("", decision, generation)
        finally:
            if not finished:
                try:
                    self.learner.drop(decision.decision_id)
                finally:  # what the model spent is charged whatever forgetting its decision met
                    self._charge_abandoned(decision, pieces)

    def _next_piece(self, decision: RoutingDecision, pieces: Iterator[StreamChunk]) -> StreamChunk:
        """The stream's next piece; where another error than a failure ends it, what the stream
        reports it spent (a cascade's first answer) is charged before the error goes on."""
        with collecting_abandoned() as spent:
            try:
                return next_piece(pieces, decision.model)
            except ModelUnavailableError:  # (charged by the caller, from the error)
                raise
            except BaseException:
                self._charge_collected(decision.model, spent)
                raise

    def _charge_abandoned(self, decision: RoutingDecision, pieces: Iterator[StreamChunk]) -> None:
        """A stream closed before its answer: close the model's stream now, and charge what
        the backend reports it spent until then (a backend that reports nothing charges nothing)."""
        close = getattr(pieces, "close", None)
        if not callable(close):
            return
        with collecting_abandoned() as spent:
            close()
        self._charge_collected(decision.model, spent)

    def _charge_collected(self, model: str, spent: Sequence[SpentReading]) -> None:
        """Charge what the streams closed or ended by an error reported they spent."""
        self._charge_spent(model, sum(reading.energy.joules for reading in spent))

    def _charge_spent(self, model: str, joules: float) -> None:
        """Charge what an answer that never came spent, as a failed attempt is charged (joules
        that are not a finite amount above 0 are not charged)."""
        if 0 < joules < math.inf:
            self.learner.charge_failed([(model, joules)])

    def generate_batch(self, requests: Sequence[RouteRequest]) -> list[RoutedGeneration]:
        """Route each request, then run those routed to the same model together: as one batch
        where the backend batches (:class:`SupportsBatching`), else one request each, up to
        its ``max_concurrency`` at once. Results keep the input order."""
        decisions: list[RoutingDecision] = []
        results: dict[int, RoutedGeneration] = {}
        started: set[int] = set()  # the queries whose own run began
        draws = self.learner.draws_now(planning=True)
        try:
            for request in requests:
                decisions.append(self.route(request, {}, request.decision_id, None))
            groups: dict[str, list[int]] = {}
            for index, decision in enumerate(decisions):
                groups.setdefault(decision.model, []).append(index)
            for indices in groups.values():
                try:
                    backend = self._backend_of(decisions[indices[0]])
                except ModelUnavailableError as gone:  # removed meanwhile: these queries go elsewhere
                    for i in indices:
                        started.add(i)
                        results[i] = self._generate_from(requests[i], decisions[i], gone)
                    continue
                results.update(self._run_group(backend, indices, requests, decisions, started))
        except BaseException:
            # answers made are never handed out: none can be scored; latest first, so that the
            # clusters take back each query's move bit for bit where no other moved them since
            for index, decision in reversed(list(enumerate(decisions))):
                if index in started:
                    self.learner.drop(decision.decision_id)
                else:  # its model never ran: not a decision of that model either, nor a query the clusters learn
                    self.learner.withdraw(decision)
                    if self.forget is not None:
                        try:
                            self.forget(requests[index], decision.features)
                        except Exception as error:  # (an embedder away): the rest are still withdrawn
                            logger.warning("the clustering kept a withdrawn query's step: %r", error)
            if not started:  # none ran: the policy's steps and draws for them are taken back too
                self.learner.take_back_draws(draws, len(decisions))
            raise
        return [results[i] for i in range(len(decisions))]

    def _run_group(
        self,
        backend: ModelBackend,
        indices: list[int],
        requests: Sequence[RouteRequest],
        decisions: list[RoutingDecision],
        started: set[int],
    ) -> dict[int, RoutedGeneration]:
        """Run one model's queries (``indices``), noting in ``started`` each whose run begins."""
        batcher = batch_generator(backend)
        if batcher is not None:
            settings = requests[indices[0]].settings
            started.update(indices)
            try:
                outputs = batcher.generate_batch([requests[i].messages for i in indices], settings)
            except BatchItemsUnavailableError as error:  # those go elsewhere, the rest run here
                unfit = {indices[item]: why for item, why in error.items.items() if 0 <= item < len(indices)}
                rest = [i for i in indices if i not in unfit]
                started.difference_update(indices)  # none ran: each is marked when its own run begins
                done: dict[int, RoutedGeneration] = {}
                for i, why in unfit.items():  # a refused one's failover takes its decision back from this model
                    started.add(i)
                    done[i] = self._generate_from(requests[i], decisions[i], ModelUnavailableError(why))
                if rest and unfit:  # each try leaves fewer: this ends
                    done.update(self._run_group(backend, rest, requests, decisions, started))
                elif rest:  # a backend that named none of them: each goes alone
                    for i in rest:
                        started.add(i)
                        done[i] = self._generate_from(requests[i], decisions[i])
                return done
            except ModelUnavailableError as error:  # these queries go, one by one, elsewhere
                joules, seconds, measured = readable_spend(error)  # (a spend that is no number: none)
                share = {
                    **spent_by(error),
                    "spent_joules": joules / len(indices),
                    "spent_s": seconds,
                    "spent_measured": measured,
                }
                failed = {i: ModelUnavailableError(str(error), **share) for i in indices}
                answered: dict[int, RoutedGeneration] = {}
                for position, i in enumerate(indices):
                    try:
                        answered[i] = self._generate_from(requests[i], decisions[i], failed[i])
                    except BaseException:  # the batch fails: the others' shares were spent all the same
                        for later in indices[position + 1 :]:
                            self.learner.fail_over(decisions[later])
                            self._charge(decisions[later], failed[later])
                            self.learner.release(decisions[later].decision_id)
                        raise
                return answered
            finished: dict[int, RoutedGeneration] = {}
            pairs = list(zip(indices, outputs, strict=True))
            for position, (i, output) in enumerate(pairs):
                try:
                    finished[i] = self.finish(decisions[i], output, requests[i])
                except BaseException:  # the batch fails: the answers after this one were spent all the same
                    for later, spent in pairs[position + 1 :]:
                        self._charge_spent(decisions[later].model, spent.energy.joules)
                    raise
            return finished

        def one(index: int) -> RoutedGeneration:
            started.add(index)
            return self._generate_from(requests[index], decisions[index])

        workers = min(len(indices), concurrency_of(backend))
        if workers == 1:
            return {index: one(index) for index in indices}
        with ThreadPoolExecutor(workers, thread_name_prefix="greenserv-batch") as pool:
            return dict(zip(indices, pool.map(one, indices), strict=True))

    def _generate_from(
        self, request: RouteRequest, decision: RoutingDecision, failure: ModelUnavailableError | None = None
    ) -> RoutedGeneration:
        """Generate for a query already routed (whose model may already have failed it)."""
        failures: list[FailedAttempt] = []
        generation = self.with_failover(
            request,
            lambda again: self._generate_once(request, again),
            decision=decision,
            failure=failure,
            failures=failures,
        )
        return self.settle(generation, failures)

    def _backend_of(self, decision: RoutingDecision) -> ModelBackend:
        """The decision's model, or :class:`ModelUnavailableError` if it left the pool since
        (removed while the query was routed), or another model took its name (it was never
        checked for this query): the query then fails over like any other."""
        try:
            backend = self.backend(decision.model)
        except UnknownModelError as error:
            raise ModelUnavailableError(f"{decision.model} left the pool: {error}") from error
        if decision.chosen is not None and not decision.chosen.refers_to(backend):
            raise ModelUnavailableError(f"{decision.model} was replaced in the pool after this query was routed to it")
        return backend

    def _still_in_pool(self, decision: RoutingDecision) -> bool:
        """Whether the model a decision chose is still the one in the pool under its name."""
        try:
            self._backend_of(decision)
        except ModelUnavailableError:
            return False
        return True

    def _member_still_in_pool(self, decision: RoutingDecision, member: str) -> bool:
        """Whether a member of the cascade a decision chose is still the model in the pool under
        its name (the one the cascade ran), whether or not the cascade is."""
        try:
            backend = self.backend(member)
        except UnknownModelError:
            return False
        cascade = None if decision.chosen is None else decision.chosen.target()
        if not isinstance(cascade, CascadeBackend):  # (a copied decision: nothing to check against)
            return True
        ran = {model.info.name: model for model in (cascade.first, cascade.then)}
        return ran.get(member, backend) is backend

    def _generate_once(self, request: RouteRequest, decision: RoutingDecision) -> RoutedGeneration:
        backend = self._backend_of(decision)
        if isinstance(backend, CascadeBackend):
            result = backend.generate(request.messages, request.settings, self._escalation(decision, backend))
        else:
            result = backend.generate(request.messages, request.settings)
        return self.finish(decision, result, request)

    def _escalation(self, decision: RoutingDecision, cascade: CascadeBackend) -> Escalate:
        """The learned escalation rule for a decision routed to a cascade (the cascade's fixed
        threshold where the decision left the pending store while its first model answered, or
        where the store cannot be reached then)."""
        return LearnedEscalation(self.learner, decision.decision_id, cascade)

    # ---- the result --------------------------------------------------------------------------
    def finish(self, decision: RoutingDecision, result: GenerationResult, request: RouteRequest) -> RoutedGeneration:
        """Record the cost, parse the tool calls an answer makes, and score them if asked. An
        answer whose caller stopped waiting (:class:`~greenserv_core.async_bridge.Delivery`)
        is charged as a failed attempt is and its decision dropped, as a closed stream's is:
        nothing is learned from it, and it cannot be scored."""
        delivery = current_delivery()
        if delivery is None:
            return self._finish(decision, result, request)

        def abandon() -> None:
            self.learner.charge_failed([(decision.model, result.energy.joules)])
            self.learner.drop(decision.decision_id)

        return delivery.record(
            lambda: self._finish(decision, result, request),
            abandon=abandon,
            forget=lambda: self.learner.drop(decision.decision_id),
        )

    def _finish(self, decision: RoutingDecision, result: GenerationResult, request: RouteRequest) -> RoutedGeneration:
        agreed = result.chain[-1].agreed if result.chain else None
        members = [  # each model's own answer: a confidence question is the cascade's cost, not the model's
            (step.model, step.energy_joules - step.confidence_joules, step.latency_s - step.confidence_s)
            for step in result.chain
        ]
        try:
            check_spent(result.energy.joules, result.latency_s, members)
        except InvalidInputError:  # (a NaN latency) nothing can learn from it, but its joules were spent
            self._charge_spent(decision.model, result.energy.joules)
            raise
        limit = request.settings.max_time_s
        # cut by its time limit: the answer would have taken longer (its seconds are a lower bound);
        # a cascade's by its members' own seconds (a failed second model's or a question's are not its answer's)
        answered_s = sum(seconds for _, _, seconds in members) if members else result.latency_s
        cut = (
            result.finish_reason == "length"
            and limit is not None
            and answered_s >= _CUT_AT * limit
            # not its token limit's cut (each model of a cascade has the limit: the last answer's tokens)
            and (result.chain[-1].output_tokens if result.chain else result.output_tokens)
            < request.settings.max_new_tokens
        )
        try:
            if agreed is not None:
                self.learner.record_agreement(decision.decision_id, agreed, routed=True)
            self.learner.record_outcome(
                decision.decision_id,
                energy_joules=result.energy.joules,
                latency_s=result.latency_s,
                energy_source=result.energy.source,
                members=members,
                cut_by_time=cut,
            )
        except (UnknownDecisionError, PendingStoreUnreachableError) as error:  # the answer stands
            expired = True
            self.learner.record_expired_outcome(  # its cost is learned from the decision itself
                decision,
                energy_joules=result.energy.joules,
                latency_s=result.latency_s,
                members=members,
                cut_by_time=cut,
                current=self._still_in_pool(decision),
                member_current=lambda member: self._member_still_in_pool(decision, member),
            )
            if isinstance(error, PendingStoreUnreachableError):  # (the store went away while the model answered)
                logger.warning(
                    "the pending store could not record the outcome of decision %s (%s): the answer is returned "
                    "and its joules are counted by this router; it can be scored only if the store still holds "
                    "the decision once it is back",
                    decision.decision_id,
                    error,
                )
            else:  # dropped from the pending store while it ran
                logger.warning(
                    "decision %s left the pending store before its answer came (%s): the answer is returned, "
                    "but cannot be scored; raise max_pending or pending_ttl_s",
                    decision.decision_id,
                    error,
                )
        else:
            expired = False
        tools = request.settings.tools
        parsed = parse_tool_calls(result.text, tools) if tools else ParsedOutput(result.text)
        generation = RoutedGeneration(
            text=parsed.text,
            model=decision.model,
            decision_id=decision.decision_id,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            latency_s=result.latency_s,
            energy_joules=result.energy.joules,
            energy_source=result.energy.source,
            energy_measured=result.energy.measured,
            finish_reason=result.finish_reason,
            decision=decision,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            chain=result.chain,
        )
        if request.score_tool_calls and not expired and (parsed.tool_calls or parsed.invalid_tool_calls):
            try:
                self.learner.feedback(decision.decision_id, 0.0 if parsed.invalid_tool_calls else 1.0)
            except DecisionAlreadyScoredError:  # the caller scored it while it streamed: that score stands
                logger.info(
                    "decision %s was scored while it streamed: its tool calls are not scored", decision.decision_id
                )
            except PendingStoreUnreachableError as error:  # the answer stands; its tool calls' score is lost
                logger.warning(
                    "the pending store could not take the score of decision %s's tool calls (%s): the answer is "
                    "returned unscored",
                    decision.decision_id,
                    error,
                )
        return generation


class LearnedEscalation:
    """A decision's learned escalation rule, as a cascade calls it (see
    :data:`~greenserv_core.cascades.backend.Escalate`)."""

    def __init__(self, learner: RoutingLearner, decision_id: str, cascade: CascadeBackend | None) -> None:
        self.learner, self.decision_id, self.cascade = learner, decision_id, cascade
        self.spent_joules: float | None = None
        """What the first step spent, when the cascade says (:meth:`first_spent`)."""
        self.spent_seconds: float | None = None
        """The seconds the first step took, when the cascade says (:meth:`first_took`)."""
        self.signal: str | None = None
        """The name of the signal that read the first answer's confidence, when the cascade
        says (:meth:`first_signal`)."""

    def first_spent(self, joules: float) -> None:
        """The cascade's first step (its answer, and a question about it) spent ``joules``: the
        rule checks it, with the second model's prediction, against the query's cap."""
        self.spent_joules = joules

    def first_took(self, seconds: float) -> None:
        """The cascade's first step took ``seconds``: the rule checks them, with the second
        model's prediction, against the query's latency limit."""
        self.spent_seconds = seconds

    def first_signal(self, name: str) -> None:
        """The signal named ``name`` read the first answer's confidence: the rule weighs and
        learns it under that name (signals of other scales each have a correction of their own)."""
        self.signal = name

    def __call__(self, confidence: float | None) -> Verdict:
        try:
            return self.learner.escalate(
                self.decision_id,
                confidence,
                spent_joules=self.spent_joules,
                spent_seconds=self.spent_seconds,
                signal=self.signal,
            )
        except (UnknownDecisionError, DecisionAlreadyScoredError, PendingStoreUnreachableError):
            # the cascade's fixed threshold decides (a decision scored while its first model
            # answered is still answered, and its joules counted, as a single model's is)
            if self.cascade is None:  # (a cascade removed since: the first answer is kept, as escalate() keeps it)
                return Verdict.kept(confidence, "kept: the cascade was removed")
            return self.cascade.fixed_verdict(confidence)

    def kept_after_failure(self) -> None:
        """The escalation failed (or no time was left for it) and the first answer is kept: a
        score that comes while it streams labels the first model's answer."""
        self.learner.kept_after_failure(self.decision_id)
