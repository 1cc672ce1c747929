"""Ponder's exception hierarchy, shared by every layer.

Each error carries a short `user_message` that is safe to show in a chat. The `str()` of the
error is the detailed message for logs and the CLI.
"""

from __future__ import annotations


class PonderError(Exception):
    """Base class for every error Ponder raises on purpose."""

    user_message = "Something went wrong while answering. Please try again later."

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        if user_message is not None:
            self.user_message = user_message


class ConfigurationError(PonderError):
    """A setting is missing or invalid."""

    user_message = "Ponder is misconfigured. Please tell the bot's admin."


class InvalidQuestionError(PonderError):
    """A question was rejected before it was stored: empty, too long or malformed."""

    user_message = "That question could not be accepted."


class NotFoundError(PonderError):
    """A user, question or other record does not exist."""

    user_message = "Not found."


class ModelError(PonderError):
    """The model backend failed to produce an answer."""

    user_message = "The model is unavailable right now. Please try again in a few minutes."
    is_transient = False


class ModelUnavailableError(ModelError):
    """The model server cannot be reached."""

    is_transient = True


class ModelNotFoundError(ModelError):
    """The configured model is not present on the model server."""


class ModelBusyError(ModelError):
    """The model server is overloaded (HTTP 503)."""

    user_message = "The model is busy right now. Please try again in a minute."
    is_transient = True


class ModelTimeoutError(ModelError):
    """A model call took longer than the configured timeout."""

    user_message = "The model took too long to answer. Please try again later."
    is_transient = True


class ModelResponseError(ModelError):
    """The model server returned an error or a malformed reply part-way."""

    is_transient = True


class UnknownStrategyError(PonderError):
    """A strategy name is not in the registry."""


class StrategyOptionError(PonderError):
    """A strategy option is unknown or has an invalid value."""


class BudgetExceededError(PonderError):
    """The asker's remaining budget does not cover the question."""

    user_message = "Your token budget is used up."


class UserBlockedError(PonderError):
    """The asker is blocked by an admin."""

    user_message = "You are blocked from asking Ponder. Ask an admin if you think this is wrong."


class RateLimitedError(PonderError):
    """The asker sent too many questions in a short time."""

    user_message = "You are asking too fast. Please wait a minute and try again."


class NotAuthorizedError(PonderError):
    """A non-admin ran an admin command."""

    user_message = "Only Ponder admins can run that command."


class DeliveryError(PonderError):
    """An answer could not be delivered to the chat platform."""

    is_transient = True
