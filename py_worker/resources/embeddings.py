"""``engine.embeddings``: vectors from an embedding model, in batches of ``EMBED_BATCH``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import protocol
from ..errors import EmbeddingExceedContextWindowSizeError
from .remote import remote_embedding

if TYPE_CHECKING:
    from ..engine import MLCEngine

EMBED_BATCH = 32
"""Inputs per kernel call."""


class Embeddings:
    """``await engine.embeddings.create(input=...)``."""

    def __init__(self, engine: MLCEngine) -> None:
        self.engine = engine

    async def create(self, **request: Any) -> dict[str, Any]:
        if (remote := self.engine.remote_for(request.get("model"))) is not None:
            return await remote_embedding(self.engine, remote, request)
        req = protocol.validate_embedding_request(request)
        engine = self.engine
        model = engine.pick(req.model, "EmbeddingCreateParams", embedding=True)
        async with engine.holding(model):
            batch: list[list[int]] = []
            for item in req.input:
                ids = (
                    list(await engine.kernels.tokenize(model.handle, item))
                    if isinstance(item, str)
                    else list(item)
                )
                model.check_token_ids(ids, "input")
                # Encoders add [CLS] and [SEP] around the tokenizer's ids.
                specials = 2 if model.config.get("cls_token_id") is not None else 0
                if len(ids) + specials > model.context_window:
                    raise EmbeddingExceedContextWindowSizeError(
                        f"The embedding input has {len(ids) + specials} tokens, more than the model's "
                        f"context window size of {model.context_window}.",
                        input_tokens=len(ids) + specials,
                        context_window_size=model.context_window,
                    )
                batch.append(ids)
            vectors: list[list[float]] = []
            for i in range(0, len(batch), EMBED_BATCH):
                vectors += await engine.kernels.embed(model.handle, batch[i : i + EMBED_BATCH])
        return protocol.responses.embedding_response(model.model_id, vectors, sum(len(b) for b in batch))
