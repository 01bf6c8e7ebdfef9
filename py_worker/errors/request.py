"""Errors of a request that breaks a rule of the OpenAI surface: the checks web-llm makes of a
request, and the ranges of its generation config (web-llm's postInitAndCheckGenerationConfigValues).
"""

from __future__ import annotations

from py_worker.errors.families import GenerationConfigError, RequestValidationError


class UnsupportedFieldsError(RequestValidationError):
    """The request sets a field web-llm declares but does not support."""

    fields_ = ("fields_found", "target")


class InvalidRequestFieldError(RequestValidationError):
    """A field has the wrong type, a non-finite number, or a required one is missing."""

    optional_ = ("field", "expected")


class StreamingCountError(RequestValidationError):
    """A streaming request asks for n > 1 choices."""

    fields_ = ("n",)


class SeedTypeError(RequestValidationError):
    """``seed`` is not an integer."""

    fields_ = ("value",)


class InvalidStreamOptionsError(RequestValidationError):
    """``stream_options`` is set on a request that does not stream."""


class MessageOrderError(RequestValidationError):
    """The messages are in an order the engine cannot serve (e.g. the last is not user/tool)."""

    fields_ = ("role",)


class SystemMessageOrderError(RequestValidationError):
    """A system message appears anywhere but first."""

    fields_ = ("index",)


class ContentTypeError(RequestValidationError):
    """A system, assistant or tool message has content that is not a string."""

    fields_ = ("role", "index")


class UnsupportedRoleError(RequestValidationError):
    """A message has a role other than system, user, assistant or tool."""

    fields_ = ("role", "index")


class UserMessageContentError(RequestValidationError):
    """A user message's content is neither a string nor a list of text parts."""

    fields_ = ("index",)


class ChatTemplateError(RequestValidationError):
    """The model's Jinja chat template cannot render these messages.

    Fields: ``kind`` is ``"raised"`` (the template called ``raise_exception``, e.g. for roles that
    do not alternate), ``"syntax"`` (the template does not parse), ``"render"`` (it failed while
    rendering) or ``"missing"`` (the config has no template string); ``error`` is the underlying
    exception's class name; ``line`` is the template line when Jinja knows it, else None.
    """

    fields_ = ("kind", "error", "line")


class EmbeddingInputEmptyError(RequestValidationError):
    """Embedding input is empty, or holds an empty string or an empty token list."""


class EmbeddingUnsupportedEncodingFormatError(RequestValidationError):
    """Embeddings were asked for in base64; only float is supported."""


class UnsupportedResponseFormatError(RequestValidationError):
    """``response_format.type`` is not text, json_object, grammar or structural_tag."""

    fields_ = ("type",)


class InvalidResponseFormatError(RequestValidationError):
    """A JSON schema is given with a response_format type other than json_object."""

    fields_ = ("type",)


class InvalidResponseFormatGrammarError(RequestValidationError):
    """A grammar is given without type grammar, or type grammar without a grammar."""

    fields_ = ("type",)


class GrammarError(RequestValidationError):
    """A response_format's schema, grammar or structural tag does not compile (``kind``,
    ``reason``: the grammar engine's own words), or the grammar engine cannot load."""

    fields_ = ("kind", "reason")


class UnsupportedToolTypeError(RequestValidationError):
    """A tool is not of type "function", the only type supported."""

    fields_ = ("index",)


class UnsupportedToolChoiceError(RequestValidationError):
    """``tool_choice`` cannot be honoured (family of the tool-choice errors below)."""


class InvalidToolChoiceError(UnsupportedToolChoiceError):
    """``tool_choice`` is a string other than "none" or "auto"."""

    fields_ = ("value",)


class UnsupportedToolChoiceTypeError(UnsupportedToolChoiceError):
    """A named ``tool_choice`` is not of type "function"."""


class FunctionNotFoundError(UnsupportedToolChoiceError):
    """A named ``tool_choice`` names a function that is not in ``tools``."""

    fields_ = ("name", "tools")


class ContextWindowSizeExceededError(RequestValidationError):
    """The prompt has more tokens than the model's context window."""

    optional_ = ("context_window_size", "prompt_tokens", "length", "added", "backend")


class EmbeddingExceedContextWindowSizeError(RequestValidationError):
    """An embedding input has more tokens than the embedding model's context window."""

    fields_ = ("input_tokens", "context_window_size")


class PenaltyRangeError(GenerationConfigError):
    """frequency_penalty or presence_penalty lies outside [-2, 2]."""

    fields_ = ("field", "value")


class RepetitionPenaltyError(GenerationConfigError):
    """repetition_penalty is not greater than 0."""

    fields_ = ("value",)


class MaxTokensError(GenerationConfigError):
    """max_tokens is not greater than 0."""

    fields_ = ("value",)


class TopPError(GenerationConfigError):
    """top_p lies outside (0, 1]."""

    fields_ = ("value",)


class TemperatureError(GenerationConfigError):
    """temperature is negative."""

    fields_ = ("value",)


class LogitBiasError(GenerationConfigError):
    """A logit_bias key is not a token id, or its value lies outside [-100, 100]."""

    optional_ = ("key", "token", "value")


class TopLogprobsError(GenerationConfigError):
    """top_logprobs lies outside [0, 5]."""

    fields_ = ("value",)


class LogprobsNotEnabledError(GenerationConfigError):
    """top_logprobs is set while logprobs is not true."""

    fields_ = ("top_logprobs",)
