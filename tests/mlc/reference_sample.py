"""Reads [{logits, params, uniform}] as JSON on stdin; writes the reference sampler's picks.

The mlc contract test feeds the same logits to js_glue/kernels/mlc.js and to
py_worker.reference.sampling, so both backends provably follow the one rule of kernels.py.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from py_worker.kernels import SamplingParams
from py_worker.reference.sampling import sample


def main() -> None:
    out = []
    for case in json.load(sys.stdin):
        p = dict(case["params"])
        p["logit_bias"] = {int(t): float(b) for t, b in p.get("logit_bias", [])}
        params = SamplingParams(**p)
        picked = sample(np.asarray(case["logits"], dtype=np.float32), params, float(case["uniform"]))
        out.append({"token": picked.token, "logprob": picked.logprob, "top_logprobs": picked.top_logprobs})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
