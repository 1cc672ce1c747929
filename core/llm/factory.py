"""Create the model client that the settings ask for."""

from __future__ import annotations

from core.config import Settings
from core.llm.base import ModelClient


def create_model_client(settings: Settings) -> ModelClient:
    """Return a new client for the configured backend; callers share one per process."""
    if settings.model_backend == "ollama":
        from core.llm.ollama import OllamaClient

        return OllamaClient(
            host=settings.ollama_host,
            model=settings.ollama_model,
            timeout_seconds=settings.model_timeout_seconds,
            max_parallel=settings.model_parallelism,
        )
    from core.llm.embedded import EmbeddedClient

    return EmbeddedClient(
        settings.embedded_model_path,
        context_tokens=settings.embedded_context_tokens,
        threads=settings.embedded_threads,
    )
