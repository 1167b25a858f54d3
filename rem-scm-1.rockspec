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
-- The Makefile builds rem.core from every source file (no list to keep in step here) and
-- installs the modules where luarocks says.
build = {
  type = "make",
  build_target = "rock",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LIBUV_INCDIR = "$(LIBUV_INCDIR)",
    LIBUV_LIBDIR = "$(LIBUV_LIBDIR)",
  },
  install_target = "rock-install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
}
