"""The OpenAI surface web-llm accepts: request validation and response/chunk builders."""

from .chat import ChatRequest, validate_chat_request
from .completion import CompletionRequest, validate_completion_request
from .embedding import EmbeddingRequest, validate_embedding_request
from .generation_config import GenerationConfig, grammar_of
from .responses import Choice, TokenLogprob

__all__ = [
    "ChatRequest",
    "Choice",
    "CompletionRequest",
    "EmbeddingRequest",
    "GenerationConfig",
    "TokenLogprob",
    "grammar_of",
    "validate_chat_request",
    "validate_completion_request",
    "validate_embedding_request",
]
