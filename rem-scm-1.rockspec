rockspec_format = "3.0"
package = "rem"
version = "scm-1"
source = {
  url = "git+file:///rem",
}
description = {
  summary = "Structured resource management for Lua 5.4 over libuv",
  detailed = [[
rem gives Lua scripts what Python programmers get from async with, AsyncExitStack,
aiorem's resource managers and gather_cm: everything acquired is released exactly once,
in order, even when acquiring, the body or the release fails, or the task is cancelled
or times out. Tasks are coroutines driven by a libuv loop.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4",
}
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
}
build = {
  type = "builtin",
  modules = {
    ["rem"] = "lua/rem/init.lua",
    ["rem.core"] = {
      sources = {
        "runtime/errlist.c", "runtime/group.c", "runtime/scheduler.c", "runtime/scope.c",
        "runtime/task.c", "runtime/timers.c",
        "bindings/await.c", "bindings/clock.c", "bindings/core.c", "bindings/errors.c",
        "bindings/group.c", "bindings/scope.c", "bindings/task.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "runtime", "bindings", "$(LIBUV_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)" },
      libraries = { "uv" },
    },
  },
}
