"""W4, asyncio (--uvloop: uvloop): 100,000 members entered concurrently (gather_cm-style),
each enter sleeping 10 ms, then all exited concurrently. Prints the wall time in ms."""
import asyncio
import time
from common import gather_enter, gather_exit, run

MEMBERS = 100_000


class Member:
    __slots__ = ()

    async def __aenter__(self):
        await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, typ, exc, tb):
        return False


async def main():
    members = [Member() for _ in range(MEMBERS)]
    t0 = time.perf_counter_ns()
    await gather_enter(members)
    await gather_exit(members)
    t1 = time.perf_counter_ns()
    print("RESULT %.3f" % ((t1 - t0) / 1e6))

run(main)
