"""W3, asyncio (--uvloop: uvloop): `w3.py PORT [--uvloop]`. 10 rounds of: enter 1,000
connections concurrently (gather_cm-style), write 64 bytes on each and read the echo, exit
all concurrently. Prints ms per round."""
import asyncio
import sys
import time
from common import gather_enter, gather_exit, run

CONNS, ROUNDS = 1000, 10
PORT = int(sys.argv[1])
PAYLOAD = (b"abcdefghijklmnopqrstuvwxyz" * 3)[:64]


class Conn:
    """A connection as a context manager: enter connects, exit closes and waits."""
    __slots__ = ("reader", "writer")

    async def __aenter__(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", PORT)
        return self

    async def __aexit__(self, typ, exc, tb):
        self.writer.close()
        await self.writer.wait_closed()
        return False


async def round_():
    conns = [Conn() for _ in range(CONNS)]
    await gather_enter(conns)
    try:
        for c in conns:
            c.writer.write(PAYLOAD)
        for c in conns:
            assert await c.reader.readexactly(64) == PAYLOAD
    except BaseException as e:
        await gather_exit(conns, e)
        raise
    await gather_exit(conns)


async def main():
    t0 = time.perf_counter_ns()
    for _ in range(ROUNDS):
        await round_()
    t1 = time.perf_counter_ns()
    print("RESULT %.3f" % ((t1 - t0) / 1e6 / ROUNDS))

run(main)
