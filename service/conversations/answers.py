"""The API's answers to the writes of one unit of work, for the audit trail.

The executor applies each user's plan in a task of its own and wraps it in `collecting()`;
the client `note`s the last answer (after its retries) to every write it sends. A context
variable carries the list, so concurrent users' answers never mix and the client's signatures
stay as they are; outside `collecting()` nothing is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from service.conversations.errors import ApiError, ConversationsError
from service.conversations.transport import Reply, Request
from service.domain.audit import Answer

_ANSWERS: ContextVar[list[Answer] | None] = ContextVar("usersync_answers", default=None)


@contextmanager
def collecting() -> Iterator[list[Answer]]:
    """The answers to the writes made inside the block, in order."""
    answers: list[Answer] = []
    token = _ANSWERS.set(answers)
    try:
        yield answers
    finally:
        _ANSWERS.reset(token)


def note(answer: Answer) -> None:
    answers = _ANSWERS.get()
    if answers is not None:
        answers.append(answer)


def noted(request: Request, answer: Reply | ConversationsError) -> None:
    """A write's last answer (a reply or the error it ends with), if anyone is collecting."""
    if not request.write or _ANSWERS.get() is None:
        return
    if isinstance(answer, Reply):
        status, request_id = answer.status, answer.request_id
        note(Answer(operation=request.operation, status=status, request_id=request_id))
        return
    api_error = answer if isinstance(answer, ApiError) else None
    note(
        Answer(
            operation=request.operation,
            status=api_error.status if api_error else None,
            request_id=api_error.request_id if api_error else None,
            twilio_code=api_error.code if api_error else None,
            message=str(answer),
        )
    )
