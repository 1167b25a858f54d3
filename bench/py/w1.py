"""W1, asyncio: 200,000 sequential `async with` of a trivial aiorem-style manager (a fresh
one each time). Prints ns per enter+exit."""
import time
from common import Manager, run

N, REPS = 200_000, 5


class M(Manager):
    __slots__ = ()


async def batch():
    for _ in range(N):
        async with M():
            pass


async def main():
    await batch()
    t0 = time.perf_counter_ns()
    for _ in range(REPS):
        await batch()
    t1 = time.perf_counter_ns()
    print("RESULT %.2f" % ((t1 - t0) / (N * REPS)))

run(main)
