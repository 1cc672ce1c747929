"""Model clients: one async interface with embedded (llama.cpp), Ollama and scripted backends."""

from core.llm.base import ChatMessage, ChatResult, FinishReason, ModelClient, SamplingOptions

__all__ = ["ChatMessage", "ChatResult", "FinishReason", "ModelClient", "SamplingOptions"]
