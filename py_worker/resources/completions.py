"""``engine.completions``: raw text completion, no chat format; each request starts from an
empty KV cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from .. import protocol
from ..errors import InvalidRequestFieldError
from ..generate import Outcome
from ..model import Model
from .answer import Shapes, answer
from .remote import remote_completion

if TYPE_CHECKING:
    from ..engine import MLCEngine
    from ..stream import Stream


class Completions:
    """``await engine.completions.create(prompt=..., stream=..., ...)``."""

    def __init__(self, engine: MLCEngine) -> None:
        self.engine = engine

    @overload
    async def create(self, *, prompt: str, stream: Literal[True], **params: Any) -> Stream: ...

    @overload
    async def create(
        self, *, prompt: str, stream: Literal[False] = False, **params: Any
    ) -> dict[str, Any]: ...

    async def create(self, **request: Any) -> dict[str, Any] | Stream:
        if (remote := self.engine.remote_for(request.get("model"))) is not None:
            return await remote_completion(self.engine, remote, request)
        req = protocol.validate_completion_request(request)
        model = self.engine.pick(req.model, "CompletionCreateParams", embedding=False)
        return await answer(self.engine, model, TextCompletion(req), req.config)


class TextCompletion:
    """The text-completion ``Kind`` of one request (see answer.py)."""

    shapes = Shapes(
        "cmpl",
        protocol.responses.completion,
        lambda id, model_id, created, text, finish, logprobs, _calls: protocol.responses.completion_chunk(
            id, model_id, created, 0, text, finish, logprobs
        ),
        protocol.responses.completion_usage_chunk,
    )
    grammar: tuple[str, str] | None = None  # text completions take no response_format

    def __init__(self, req: protocol.CompletionRequest) -> None:
        self.text = req.prompt
        self.echo = req.echo

    async def prompt(self, engine: MLCEngine, model: Model) -> list[int]:
        ids = list(await engine.kernels.tokenize(model.handle, self.text))
        if not ids:
            raise InvalidRequestFieldError(
                "prompt has no tokens: there is nothing to continue.", field="prompt"
            )
        await model.chat.reset(engine.kernels, model.handle)
        return ids

    def record(self, model: Model, outcome: Outcome, *, keep: bool) -> None:
        model.last_message = outcome.text

    def opening(self) -> str:
        return self.text if self.echo else ""

    def holder(self) -> None:
        return None

    def finish(self, text: str, finish_reason: str) -> tuple[str, None, str]:
        return text, None, finish_reason
