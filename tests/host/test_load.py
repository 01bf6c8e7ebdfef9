"""Load: 64 concurrent requests across loaded models all end correctly, and match a serial run.

The mix (bench/load.py) spans two tiny Llamas and a tiny BERT: streamed and non-streaming chat
and text completions, embeddings, streams abandoned early and streams interrupted. Every request
must end with one reply and no error; every stream must carry one response id and its own model
(no chunk of another request slipped in); run again one request at a time on a fresh worker, the
same seeds must give the same texts and vectors.

It runs twice. Without the interrupts (those streams simply read to their end), every request
but the abandoned streams must match the serial run exactly. With them: an interrupt ends every
request accepted before it (running, or waiting for its model), so a request that ended in
"abort" (and every abandoned stream) is only checked to be a prefix of its serial text.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
import pytest

from bench.load import BERT, LLMS, Job, Result, make_jobs, run_all


def by_index(results: list[Result]) -> dict[int, Result]:
    return {r.job.index: r for r in results}


def without_interrupts(jobs: list[Job]) -> list[Job]:
    return [dataclasses.replace(j, fate="complete") if j.fate == "interrupt" else j for j in jobs]


@pytest.mark.parametrize("interrupts", [False, True], ids=["no-interrupts", "interrupts"])
def test_64_concurrent_requests_match_the_serial_run(interrupts: bool) -> None:
    jobs = make_jobs(64)
    assert len(jobs) == 64
    assert {j.model for j in jobs} == {*LLMS, BERT}
    assert {j.fate for j in jobs} == {"complete", "abandon", "interrupt"}
    if not interrupts:
        jobs = without_interrupts(jobs)

    async def main() -> tuple[list[Result], list[Result], Any]:
        concurrent, _, handler, client = await run_all(jobs, concurrent=True)
        engine = handler.engine
        assert not engine.locks.held()
        assert not engine.running
        assert not handler.streams
        assert not engine.streams
        for uuid in client.sent:  # one terminal reply per message, the protocol's own included
            assert len(client.terminal(uuid)) == 1, uuid
        serial, _, _, _ = await run_all(jobs, concurrent=False)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return concurrent, serial, leftover

    concurrent, serial, leftover = asyncio.run(main())
    assert leftover == []
    many, one = by_index(concurrent), by_index(serial)
    compared = 0
    for job in jobs:
        got, want = many[job.index], one[job.index]
        assert got.error is None, (job, got.error, want.error)
        assert want.error is None, (job, got.error, want.error)
        assert got.models == {job.model}, (job, got.models)
        if job.kind == "embedding":
            assert len(got.vectors) == len(want.vectors) > 0
            np.testing.assert_allclose(got.vectors, want.vectors, rtol=0, atol=1e-6)
            compared += 1
            continue
        assert len(got.chunk_ids) == 1, (job, got.chunk_ids)  # one response id per request
        if job.fate == "complete" and got.finish_reason != "abort":
            assert got.finish_reason in ("stop", "length"), job
            assert got.text == want.text, job
            assert got.finish_reason == want.finish_reason, job
            assert got.completion_tokens == want.completion_tokens, job
            usage_asked = not job.stream or "stream_options" in job.request
            assert got.completion_tokens > 0 or not usage_asked, job
            compared += 1
        else:
            assert not (job.fate == "complete" and not interrupts), job  # nothing else aborts it
            assert want.text.startswith(got.text), (job, got.text, want.text)
        if job.fate == "interrupt":
            assert got.finish_reason == want.finish_reason == "abort", job
        if job.fate == "abandon":  # left early, or was cut (an interrupt also ends queued requests)
            assert got.finish_reason in (None, "abort"), job
            assert got.text or got.finish_reason, job
    ids = [next(iter(r.chunk_ids)) for r in concurrent if r.chunk_ids]
    assert len(ids) == len(set(ids))  # no two requests share a response id
    if not interrupts:
        assert compared == sum(j.fate == "complete" for j in jobs)
    print(f"load: {compared} of 64 concurrent requests matched the serial run exactly")
