"""W2, asyncio: an AsyncExitStack of 1,000 entries (500 entered trivial managers and 500
callbacks, interleaved), unwound; 200 times. Prints ns per entry."""
import contextlib
import time
from common import Manager, run

ENTRIES, TIMES, REPS = 1000, 200, 5


class M(Manager):
    __slots__ = ()


def callback():
    pass


async def batch():
    for _ in range(TIMES):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(ENTRIES // 2):
                await stack.enter_async_context(M())
                stack.callback(callback)


async def main():
    await batch()
    t0 = time.perf_counter_ns()
    for _ in range(REPS):
        await batch()
    t1 = time.perf_counter_ns()
    print("RESULT %.2f" % ((t1 - t0) / (ENTRIES * TIMES * REPS)))

run(main)
