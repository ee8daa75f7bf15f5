"""Benchmarks: throttle_trio beside its peers, on asyncio and trio.

Run them all with ``python -m bench`` (``--quick`` for a smoke run under a minute; ``--output``
for where the markdown report goes, by default ``bench/results/latest.md``):

1. :mod:`bench.uncontended`: the cost of an acquire nobody waits for.
2. :mod:`bench.contended`: CPU per admission with 100 to 10,000 tasks waiting.
3. :mod:`bench.accuracy`: achieved rate and the worst count in any window, stalls included.
4. :mod:`bench.fairness`: a cost-50 request among a stream of cost-1 requests.
5. :mod:`bench.memory`: memory per waiting task, and what cancelled waiters leave behind.

:mod:`bench.instructions` (``python -m bench.instructions``, not part of the full run: it needs
valgrind) counts instructions per admission on virtual clocks, the measure that does not move
with the machine's load.

The peers are configured in :mod:`bench._peers`; the seed article's limiters are reproduced
in :mod:`bench.baselines`.  Every load loop stops by itself, and nothing touches the network.
"""
