"""Shared by the asyncio programs: an aiorem-style resource manager base class (acquire /
release with the state checked) and the runner (asyncio, or uvloop with --uvloop)."""
import asyncio
import sys


class Manager:
    """aiorem's ResourceManager shape: acquire_resources / release_resources."""

    __slots__ = ("state",)

    def __init__(self):
        self.state = "idle"

    async def acquire_resources(self):
        pass

    async def release_resources(self):
        pass

    async def release_resources_on_error(self, exc):
        await self.release_resources()

    async def __aenter__(self):
        if self.state != "idle":
            raise RuntimeError("manager is " + self.state)
        self.state = "acquiring"
        try:
            await self.acquire_resources()
        except BaseException as e:
            self.state = "releasing"
            try:
                await self.release_resources_on_error(e)
            finally:
                self.state = "idle"
            raise
        self.state = "acquired"
        return self

    async def __aexit__(self, typ, exc, tb):
        if self.state != "acquired":
            raise RuntimeError("manager is " + self.state)
        self.state = "releasing"
        try:
            if exc is None:
                await self.release_resources()
            else:
                await self.release_resources_on_error(exc)
        finally:
            self.state = "idle"
        return False


async def gather_enter(cms):
    """gather_cm's enter: every member's __aenter__ concurrently; on a failure, the members
    that entered are exited and the first error is raised."""
    results = await asyncio.gather(*(cm.__aenter__() for cm in cms), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        entered = [cm for cm, r in zip(cms, results) if not isinstance(r, BaseException)]
        await gather_exit(entered, errors[0])
        raise errors[0]
    return results


async def gather_exit(cms, exc=None):
    """gather_cm's exit: every member's __aexit__ concurrently, each with the same error."""
    typ = type(exc) if exc is not None else None
    await asyncio.gather(*(cm.__aexit__(typ, exc, None) for cm in cms))


def run(main):
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
    asyncio.run(main())
