"""The Celery tasks that answer a question and deliver the answer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import ChannelError, OperationalError

from core.answering import (
    build_input,
    estimate_prompt_tokens,
    plan_question,
    question_budget,
    record_answer,
    record_failure,
    record_plan,
    refine_plan,
    reply_from_question,
    requeue_question,
    run_plan,
)
from core.budget import reserve_question_budget
from core.config import Settings
from core.db import session_scope
from core.errors import ConfigurationError, ModelError, PonderError
from core.models import Question
from core.planner import Plan
from core.questions import record_answer_messages
from core.recovery import (
    answer_deadline,
    claim_delivery,
    claim_question,
    lease_seconds,
    mark_delivered,
    release_delivery_claim,
    retry_backoff_seconds,
)
from core.strategies.base import BudgetedClient, Progress, StrategyResult
from tasks.app import app, celery_config
from tasks.delivery import get_deliverer
from tasks.runtime import get_runtime

logger = logging.getLogger(__name__)

MAX_DELIVERY_RETRIES = 5
DELIVERY_RETRY_SECONDS = 10
QUEUE_DEPTH_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A transient model error that the task retries after `countdown_seconds`."""

    error: ModelError
    countdown_seconds: float


@app.task(name="ponder.answer_question", bind=True)
def answer_question(self: Task[Any, str], question_id: int) -> str:
    """Answer a stored question and enqueue its delivery. Safe to run twice.

    A worker retries a transient model error through the broker. In-process (eager, no broker)
    the retry sleeps and runs again inside this call, because Celery's eager `apply` would
    raise `Retry` to the caller instead of retrying.
    """
    retries = self.request.retries
    is_redelivery = bool((self.request.delivery_info or {}).get("redelivered"))
    while True:
        outcome = _answer_attempt(question_id, retries=retries, is_redelivery=is_redelivery)
        if isinstance(outcome, str):
            return outcome
        if not self.request.is_eager:
            raise self.retry(
                exc=outcome.error,
                countdown=outcome.countdown_seconds,
                max_retries=get_runtime().settings.model_max_retries,
            ) from outcome.error
        time.sleep(outcome.countdown_seconds)
        retries += 1
        is_redelivery = False


def _answer_attempt(question_id: int, *, retries: int, is_redelivery: bool) -> str | RetryLater:
    """Claim and answer the question once; return the task's result or a retry to schedule."""
    runtime = get_runtime()
    started = time.monotonic()
    claim = claim_question(
        runtime.engine,
        question_id,
        lease_seconds=lease_seconds(runtime.settings.task_hard_time_limit_seconds),
        is_redelivery=is_redelivery,
    )
    if claim.state == "held":
        logger.info("question %d is running in another task; dropping this copy", question_id)
        return "held-elsewhere"
    if claim.state == "finished":
        logger.info("question %d already finished; only delivering it", question_id)
        _enqueue_delivery(question_id)
        return "already-finished"
    question = claim.question

    logger.info("answering question %d (attempt %d)", question_id, question.attempts)
    try:
        final_plan, result = _plan_and_run(question, started)
    except ModelError as exc:
        max_retries = runtime.settings.model_max_retries
        if exc.is_transient and retries < max_retries:
            countdown = retry_backoff_seconds(runtime.settings, retries)
            logger.warning(
                "question %d: %s; retry %d of %d in %g s",
                question_id,
                exc,
                retries + 1,
                max_retries,
                countdown,
            )
            requeue_question(runtime.engine, question_id, str(exc))
            return RetryLater(error=exc, countdown_seconds=countdown)
        return _fail(question_id, exc)
    except SoftTimeLimitExceeded:
        logger.warning("question %d ran out of time", question_id)
        return _fail(
            question_id,
            PonderError(
                f"question {question_id} reached the soft time limit of "
                f"{runtime.settings.task_soft_time_limit_seconds:g} s before any answer was found",
                user_message="This question took too long to answer. Please ask a shorter one.",
            ),
        )
    except PonderError as exc:
        # A refused reservation (BudgetExceededError, UserBlockedError) already stored the
        # question as "refused". Any other error, from planning, an invalid policy or creating
        # the deliverer (a missing platform token), fails the question and so releases its
        # reservation instead of leaving it "running".
        return _fail(question_id, exc)
    except Exception as exc:
        # A bug, not a model problem: fail the question so that its reservation is released
        # instead of holding the asker's budget forever.
        logger.exception("question %d failed with an unexpected error", question_id)
        return _fail(question_id, PonderError(f"unexpected error: {exc!r}"))

    record_answer(
        runtime.engine,
        question_id,
        result,
        final_plan,
        model=runtime.client.model_name,
        wall_seconds=time.monotonic() - started,
        settings=runtime.settings,
    )
    _enqueue_delivery(question_id)
    return "answered"


def _plan_and_run(question: Question, started: float) -> tuple[Plan, StrategyResult]:
    """Plan the question, reserve its tokens and run the strategy; errors propagate."""
    runtime = get_runtime()
    assert question.id is not None
    question_id = question.id
    deliverer = get_deliverer(question.platform, runtime.settings)
    request = build_input(runtime.engine, question, system_prompt=runtime.settings.system_prompt)
    plan = plan_question(
        question,
        runtime.settings,
        budget=question_budget(runtime.engine, runtime.settings, question),
        queue_depth=queue_depth(runtime.settings),
        prompt_tokens=estimate_prompt_tokens(request.messages()),
    )
    record_plan(runtime.engine, question_id, plan)
    # A plan that does not fit (plan.fits is False) plans 0 tokens; the reservation then
    # rejects the question with the reason the asker sees, under the user's lock.
    reservation = reserve_question_budget(
        runtime.engine,
        runtime.settings,
        question_id,
        planned_tokens=plan.budget_tokens,
        minimum_tokens=plan.inputs.minimum_tokens if plan.inputs else 0,
    )
    client = BudgetedClient(
        runtime.client,
        budget_tokens=reservation.tokens,
        deadline=answer_deadline(started, runtime.settings),
    )

    async def report(progress: Progress) -> None:
        await deliverer.progress(question, progress)

    async def run() -> tuple[Plan, StrategyResult]:
        await deliverer.started(question)
        final_plan = await refine_plan(client, request, plan, runtime.settings)
        return final_plan, await run_plan(client, request, final_plan, progress=report)

    return runtime.run(run())


def _fail(question_id: int, error: PonderError) -> str:
    """Fail the question unless it is already final, deliver it, and return its status."""
    reply = record_failure(get_runtime().engine, question_id, error)
    _enqueue_delivery(question_id)
    return reply.status


@app.task(name="ponder.deliver_answer", bind=True, max_retries=MAX_DELIVERY_RETRIES)
def deliver_answer(self: Task[Any, str], question_id: int) -> str:
    """Post a finished question's answer to its chat. Safe to run twice.

    NOTE: delivery is at least once. The claim is a lease of `delivery_lease_seconds`, and
    `delivered_at` is set only after the post, so when a worker dies while posting, the broker's
    redelivery or the sweep posts the answer later. Both platforms record each posted part in
    `Question.delivery`, and Discord channel messages carry a nonce, so the later copy posts only
    the missing parts. A part can still arrive twice when the worker dies after the platform
    accepted it but before its record was written (Telegram, and Discord interaction
    follow-ups, which take no nonce), or when a delivery outlasts the lease while another copy
    takes over.
    """
    runtime = get_runtime()
    claimed_at = claim_delivery(
        runtime.engine, question_id, lease_seconds=runtime.settings.delivery_lease_seconds
    )
    if claimed_at is None:
        logger.info("question %d is delivered or being delivered; dropping this copy", question_id)
        return "skipped"
    # Loaded after the claim, so that the parts a dead worker recorded are seen here.
    with session_scope(runtime.engine) as session:
        question = session.get(Question, question_id)
    if question is None:
        logger.warning("question %d was deleted after its delivery was claimed", question_id)
        return "skipped"
    try:
        deliverer = get_deliverer(question.platform, runtime.settings)
        message_ids = runtime.run(deliverer.deliver(question, reply_from_question(question)))
    except ConfigurationError as exc:
        # A missing token does not fix itself within a retry; the sweep tries again later.
        logger.error("cannot deliver question %d: %s", question_id, exc)
        release_delivery_claim(runtime.engine, question_id, claimed_at)
        return "failed"
    except PonderError as exc:
        logger.warning("delivering question %d failed: %s", question_id, exc)
        release_delivery_claim(runtime.engine, question_id, claimed_at)
        if self.request.is_eager:
            # Celery's eager `apply` raises `Retry` to the caller instead of retrying.
            logger.error(
                "question %d stays undelivered: without a broker nothing retries it", question_id
            )
            return "failed"
        raise self.retry(exc=exc, countdown=DELIVERY_RETRY_SECONDS) from exc
    record_answer_messages(runtime.engine, question, question.chat_id, message_ids)
    mark_delivered(runtime.engine, question_id)
    logger.info(
        "delivered question %d to %s in %d message(s)",
        question_id,
        question.platform,
        len(message_ids),
    )
    return "delivered"


def queue_depth(settings: Settings) -> int:
    """Return how many tasks wait in the answer queue; 0 without a broker.

    The planner shrinks budgets as the queue grows. A broker error only costs that scaling, so
    it is logged and counted as an empty queue.
    """
    if not settings.broker_url:
        return 0
    try:
        with app.connection_for_read(
            settings.broker_url,
            connect_timeout=QUEUE_DEPTH_TIMEOUT_SECONDS,
            transport_options={
                **celery_config(settings)["broker_transport_options"],
                "socket_timeout": QUEUE_DEPTH_TIMEOUT_SECONDS,
            },
        ) as connection:
            # The celery-types stubs leave queue_declare out of StdChannel; kombu has it. A
            # passive declare would check the key with EXISTS, which kombu 5.7's Redis transport
            # does not prefix with global_keyprefix. On Redis a declare creates nothing, and it
            # counts the messages with LLEN, which is prefixed.
            channel: Any = connection.default_channel
            declared = channel.queue_declare(queue=settings.task_queue)
    except (ChannelError, OperationalError, OSError) as exc:
        logger.warning("could not read the length of queue %s: %s", settings.task_queue, exc)
        return 0
    return int(declared.message_count)


def enqueue(task: Task[Any, str], question_id: int) -> None:
    """Send a task to the broker, or run it in this process when no broker is configured."""
    if get_runtime().settings.broker_url:
        task.delay(question_id)
        return
    logger.info(
        "no broker configured; running %s for question %d in this process", task.name, question_id
    )
    task.apply(args=(question_id,), throw=True)


def enqueue_answer(question_id: int) -> None:
    """Queue a stored question for answering; call after the question's transaction committed."""
    enqueue(answer_question, question_id)


def _enqueue_delivery(question_id: int) -> None:
    enqueue(deliver_answer, question_id)
