"""Checkpoint loads per 100 requests in a fleet, simulated (issue 16, docs/scaling.md): pure Python, seconds.

    python -m bench fleet_sim

Requests name one of C checkpoints with Zipf popularity (P(rank r) ∝ 1/r^s) and arrive as a Poisson
stream at half the fleet's compute capacity (round-robin's loads push it past 70%). Each of W workers
runs one job at a time, FIFO, and keeps an LRU of `cache` pipelines; a job whose checkpoint it does not
hold pays a load first. Policies:

* round-robin: request i to worker i mod W, whatever it holds;
* least-loaded: the worker with the fewest jobs (Ray Serve's routing without multiplexing);
* affinity:     Ray Serve model multiplexing as the fleet uses it: a worker that holds the checkpoint and
                has room (fewer than `max_ongoing` = 4 jobs), the least loaded of those; else the least loaded
                worker, which loads it (and evicts its least recently used one).

Times are in units of one job's compute (an SDXL 1024² 30-step generate, ~5 s on an H100-class GPU); a
load costs LOAD (0.6: ~3 s, a 6.5 GB file from the page cache or a fast NVMe; over NFS or from an object
store it is several times more, which only makes affinity matter more). Reported: loads per 100 requests,
and the mean time a request waits for its result beyond its own compute (queueing plus loads).
"""

from __future__ import annotations

import bisect
import random
from collections import OrderedDict
from dataclasses import dataclass, field

LOAD = 0.6
UTILIZATION = 0.5
REQUESTS = 20_000


@dataclass
class Worker:
    cache_size: int
    cache: OrderedDict[int, None] = field(default_factory=OrderedDict)
    free_at: float = 0.0
    finishes: list[float] = field(default_factory=list)  # of jobs assigned and not yet done, sorted

    def ongoing(self, now: float) -> int:
        del self.finishes[:bisect.bisect_right(self.finishes, now)]
        return len(self.finishes)

    def take(self, checkpoint: int, now: float) -> tuple[bool, float]:
        """Queue the job; (whether it loads, when it finishes)."""
        loads = checkpoint not in self.cache
        if loads:
            if len(self.cache) >= self.cache_size:
                self.cache.popitem(last=False)
            self.cache[checkpoint] = None
        else:
            self.cache.move_to_end(checkpoint)
        start = max(now, self.free_at)
        self.free_at = start + 1.0 + (LOAD if loads else 0.0)
        bisect.insort(self.finishes, self.free_at)
        return loads, self.free_at


def zipf_weights(count: int, s: float) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, count + 1)]


def simulate(policy: str, *, checkpoints: int, workers: int, cache: int, s: float = 1.0, max_ongoing: int = 4,
             requests: int = REQUESTS, seed: int = 0) -> tuple[float, float]:
    """(loads per 100 requests, mean wait beyond compute), after a warm-up of a tenth of the requests."""
    rng = random.Random(seed)
    fleet = [Worker(cache) for _ in range(workers)]
    names = rng.choices(range(checkpoints), weights=zipf_weights(checkpoints, s), k=requests)
    rate = UTILIZATION * workers  # jobs per unit of compute time
    now, loads, waited, counted = 0.0, 0, 0.0, 0
    warmup = requests // 10
    for i, checkpoint in enumerate(names):
        now += rng.expovariate(rate)
        if policy == "round-robin":
            worker = fleet[i % workers]
        elif policy == "least-loaded":
            worker = min(fleet, key=lambda w: (w.ongoing(now), rng.random()))
        else:
            holders = [w for w in fleet if checkpoint in w.cache and w.ongoing(now) < max_ongoing]
            pool = holders or fleet
            worker = min(pool, key=lambda w: (w.ongoing(now), rng.random()))
        loaded, finish = worker.take(checkpoint, now)
        if i >= warmup:
            loads += loaded
            waited += finish - now - 1.0
            counted += 1
    return 100.0 * loads / counted, waited / counted


POLICIES = ("round-robin", "least-loaded", "affinity")


def table(*, checkpoints: int, workers: int, caches: tuple[int, ...], s: float) -> list[str]:
    lines = [f"{checkpoints} checkpoints, Zipf s={s}, {workers} workers, {UTILIZATION:.0%} busy, load = {LOAD} job",
             f"  {'cache/worker':>12} | " + " | ".join(f"{p:>22}" for p in POLICIES) + " | affinity/round-robin"]
    for cache in caches:
        results = {p: simulate(p, checkpoints=checkpoints, workers=workers, cache=cache, s=s) for p in POLICIES}
        cells = " | ".join(f"{results[p][0]:6.1f} loads, wait {results[p][1]:5.2f}" for p in POLICIES)
        ratio = results["affinity"][0] / results["round-robin"][0] if results["round-robin"][0] else 0.0
        lines.append(f"  {cache:>12} | {cells} | {ratio:.2f}")
    return lines


def main() -> None:
    print("loads per 100 requests and mean wait beyond compute (units of one job), simulated", flush=True)
    for checkpoints, workers, s in ((4, 2, 1.0), (32, 8, 1.0), (32, 8, 0.7), (200, 100, 1.0)):
        caches = (1, 2, 4) if workers < 100 else (1, 2, 4, 8)
        for line in table(checkpoints=checkpoints, workers=workers, caches=caches, s=s):
            print(line, flush=True)


if __name__ == "__main__":
    main()
