"""The sampling rule of ``py_worker/kernels.py``, step by step in NumPy.

Every backend must pick the same id for the same logits and uniform, so this follows the rule's
numbered steps literally. Processed logits stay f32 (as in a GPU buffer); probabilities and the
sums over them are f64 so rounding cannot move a token across a nucleus or walk boundary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from py_worker.kernels import Sampled, SamplingParams

Array = Any  # numpy.ndarray


def process_logits(logits: Array, params: SamplingParams) -> Array:
    """Steps 1-2: logit_bias, then repetition / frequency / presence penalties over ``history``."""
    out = np.array(logits, dtype=np.float32, copy=True)
    for token, bias in params.logit_bias.items():
        out[int(token)] += np.float32(bias)
    for token, count in sorted(Counter(params.history).items()):
        value = out[token]
        value = value / np.float32(params.repetition_penalty) if value > 0 else value * np.float32(
            params.repetition_penalty
        )
        out[token] = value - np.float32(params.frequency_penalty * count + params.presence_penalty)
    return out


def log_softmax(x: Array) -> Array:
    shifted = np.asarray(x, dtype=np.float64) - np.max(x)
    return shifted - np.log(np.sum(np.exp(shifted)))


def nucleus(probs: Array, top_p: float) -> Array:
    """Step 4's nucleus as a bool mask: every id with probability >= the cut-off ``t``."""
    order = np.argsort(-probs, kind="stable")
    running = np.cumsum(probs[order])
    reached = np.nonzero(running >= top_p)[0]
    last = int(reached[0]) if reached.size else len(order) - 1
    cut = probs[order[last]]
    mask: Array = probs >= cut
    return mask


def pick(probs: Array, mask: Array, uniform: float) -> int:
    """Step 5: walk the nucleus by ascending id; first id whose running sum exceeds u * mass."""
    ids = np.nonzero(mask)[0]
    running = np.cumsum(probs[ids])
    over = np.nonzero(running > uniform * running[-1])[0]
    return int(ids[over[0]] if over.size else ids[-1])


def top_logprobs(logprobs: Array, k: int) -> list[tuple[int, float]]:
    """The k most likely ids (ties: lower id first) with their log-probabilities."""
    order = np.lexsort((np.arange(len(logprobs)), -logprobs))[:k]
    return [(int(i), float(logprobs[i])) for i in order]


def sample(logits: Array, params: SamplingParams, uniform: float, allowed: Array | None = None) -> Sampled:
    """One token from raw ``logits`` by the rule; logprobs from log-softmax(l / T), T = 1 if greedy.

    ``allowed``: step 0, a grammar's bool mask over the ids (masked ids get logit −∞)."""
    processed = process_logits(logits, params)
    if allowed is not None:
        processed = np.where(allowed, processed, np.float32(-np.inf))
    if params.temperature == 0:
        token = int(np.argmax(processed))  # argmax returns the lowest id among equal maxima
        scaled = processed
    else:
        scaled = processed / np.float32(params.temperature)
        probs = np.exp(log_softmax(scaled))
        keep = nucleus(probs, params.top_p)
        token = pick(probs, keep if allowed is None else keep & allowed, uniform)
    if not params.logprobs:
        return Sampled(token)
    lps = log_softmax(scaled)
    top = [(i, lp) for i, lp in top_logprobs(lps, params.top_logprobs) if lp > -np.inf]
    return Sampled(token, float(lps[token]), top)


def with_history(params: SamplingParams, extra: Iterable[int]) -> SamplingParams:
    """``params`` whose history also holds ``extra`` (tokens sampled by earlier decode steps)."""
    return replace(params, history=[*params.history, *extra])
