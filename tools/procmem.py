"""Memory of this process's descendants (a browser and its renderer, GPU and worker processes),
for benchmarks: the proportional set size (PSS: shared pages split between the processes that
share them), summed, sampled in a thread; the peak and the last sample."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we read
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants_pss_mib(root: int | None = None) -> float:
    """Summed PSS of every descendant of ``root`` (default: this process), in MiB."""
    tree, todo, total_kib = _children(), [root or os.getpid()], 0
    while todo:
        for pid in tree.get(todo.pop(), []):
            todo.append(pid)
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total_kib += int(line.split()[1])
                        break
            except OSError:
                continue
    return total_kib / 1024


class PssSampler:
    """``with PssSampler() as m: ...`` then ``m.peak_mib`` and ``m.last_mib`` (every ``every_s``)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self.peak_mib = 0.0
        self.last_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.every_s)

    def sample(self) -> float:
        self.last_mib = descendants_pss_mib()
        self.peak_mib = max(self.peak_mib, self.last_mib)
        return self.last_mib

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
