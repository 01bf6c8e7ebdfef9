"""The openai-python style resources of ``MLCEngine``, one per module: ``engine.chat.completions``
(chat.py), ``engine.completions`` (completions.py), ``engine.embeddings`` (embeddings.py). Chat
and text completions share one request skeleton (answer.py)."""

from .chat import Chat
from .completions import Completions
from .embeddings import Embeddings

__all__ = ["Chat", "Completions", "Embeddings"]
