"""Which loaded model serves a request, and the argument checks of reload (web-llm's rules).

Kept free of engine state so the rules can be tested alone: callers pass the loaded ids and
the app config in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import (
    EmbeddingUnsupportedModelError,
    IncorrectPipelineLoadedError,
    ModelNotFoundError,
    ModelNotLoadedError,
    ReloadArgumentSizeUnmatchedError,
    ReloadModelIdNotUniqueError,
    SpecifiedModelNotFoundError,
    UnclearModelToUseError,
)


def select_model(loaded: Sequence[str], requested: str | None, request_name: str) -> str:
    """The model id that serves ``request_name``: the requested one, or the only loaded one.

    An empty ``requested`` counts as not given, as web-llm's truthiness test does.
    """
    loaded_ids = list(loaded)
    if not loaded_ids:
        raise ModelNotLoadedError(
            f"Model not loaded before trying to complete {request_name}. Call reload(model) "
            "first, or create the engine with a model.",
            request_name=request_name,
        )
    if requested:
        if requested in loaded_ids:
            return requested
        raise SpecifiedModelNotFoundError(
            f"Specified model {requested} for {request_name} is not found in loaded models. "
            f"Currently loaded models are: {', '.join(loaded_ids)}",
            requested=requested,
            loaded=loaded_ids,
            request_name=request_name,
        )
    if len(loaded_ids) == 1:
        return loaded_ids[0]
    raise UnclearModelToUseError(
        f"Multiple models are loaded in engine. Please specify the model in {request_name}. "
        f"Currently loaded models are: {', '.join(loaded_ids)}",
        loaded=loaded_ids,
        request_name=request_name,
    )


def check_reload_args(model_ids: Sequence[str], chat_opts: Sequence[Any] | None) -> None:
    """Reject a reload whose ids repeat or whose chatOpts do not pair up with the ids."""
    ids = list(model_ids)
    if chat_opts is not None and len(chat_opts) != len(ids):
        raise ReloadArgumentSizeUnmatchedError(
            f"Expect chatOpts, if specified, to match the size of modelId. However, got "
            f"{len(ids)} modelId, but {len(chat_opts)} chatOpts.",
            num_model_ids=len(ids),
            num_chat_opts=len(chat_opts),
        )
    duplicates = sorted({m for m in ids if ids.count(m) > 1})
    if duplicates:
        raise ReloadModelIdNotUniqueError(
            f"Model ids passed to reload() must be unique; repeated: {', '.join(duplicates)}. "
            "To load copies of one model, give each copy its own ModelRecord with a different "
            f"model_id. Received modelId: {', '.join(ids)}",
            model_ids=ids,
            duplicates=duplicates,
        )


def find_record(app_config: Mapping[str, Any], model_id: str) -> dict[str, Any]:
    """The app config's ``model_list`` entry for ``model_id``."""
    records = app_config.get("model_list") or []
    for record in records:
        if isinstance(record, Mapping) and record.get("model_id") == model_id:
            return dict(record)
    known = [str(r.get("model_id")) for r in records if isinstance(r, Mapping)]
    raise ModelNotFoundError(
        f"Cannot find model record in appConfig for {model_id}. Please check if the model ID is "
        f"correct and included in the model_list configuration. Known ids: {', '.join(known)}",
        model_id=model_id,
        known=known,
    )


def is_embedding_model(record: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> bool:
    """Whether a model is an embedding model: its record says ``model_type`` "embedding"
    (web-llm's ModelRecord rule), or its loaded config is an encoder (``model_type`` "bert").
    The one rule; js_glue/kernels/mlc.js applies the same one to pick its pipeline."""
    return record.get("model_type") == "embedding" or (config or {}).get("model_type") == "bert"


def check_pipeline(model_id: str, is_embedding: bool, embedding: bool, request_name: str) -> None:
    """Reject a chat/completion request to an embedding model and an embedding request to an
    LLM; ``is_embedding`` is the model's answer to ``is_embedding_model``."""
    if embedding and not is_embedding:
        raise EmbeddingUnsupportedModelError(
            f"Trying to run {request_name} with {model_id}, which does not have "
            'model_type "embedding" in its model record. Load an embedding model, or set '
            "model_type in the ModelRecord.",
            model_id=model_id,
            request_name=request_name,
        )
    if not embedding and is_embedding:
        raise IncorrectPipelineLoadedError(
            f"{request_name} expects a model loaded as an LLM. However, {model_id} is loaded as "
            "an embedding model.",
            model_id=model_id,
            request_name=request_name,
        )
