-- A line-protocol server over TCP: each line a client sends is a command, each answer a line.
--
--   PING          -> PONG
--   ECHO text     -> text
--   UPPER text    -> TEXT
--   ADD a b       -> the sum
--   QUIT          -> BYE, then the server closes that connection
--
-- The script starts the server on a free port of 127.0.0.1, runs three clients at once
-- against it, then closes the server and exits. `build/bin/rem examples/line_server.lua 30`
-- keeps it serving 30 s more, e.g. for `nc 127.0.0.1 PORT`.
local rem = require "rem"

local serve_for = tonumber(arg and arg[1]) or 0

local commands = {
  PING = function() return "PONG" end,
  ECHO = function(text) return text end,
  UPPER = function(text) return text:upper() end,
  ADD = function(text)
    local a, b = text:match("^(%-?%d+)%s+(%-?%d+)$")
    if not a then return "ERR usage: ADD a b" end
    return tostring(math.tointeger(a) + math.tointeger(b))
  end,
}

-- One connection: runs in its own task of the server's group; the stream is closed when it
-- returns (or fails, or is cancelled by srv:close()).
local function handle(stream)
  for line in stream:lines() do
    line = line:gsub("\r$", "")
    local name, rest = line:match("^(%S*)%s*(.-)$")
    name = name:upper()
    if name == "QUIT" then
      stream:write("BYE\n")
      return
    end
    local cmd = commands[name]
    stream:write(cmd and cmd(rest) or "ERR unknown command " .. name, "\n")
  end
end

local srv <close> = rem.tcp.listen("127.0.0.1", 0, handle)
local host, port = srv:address()
print(("listening on %s:%d"):format(host, port))

local sessions = {
  { "PING", "ECHO hello, rem", "QUIT" },
  { "UPPER structured concurrency", "ADD 40 2", "ADD x", "QUIT" },
  { "NOPE", "ECHO bye" },  -- ends without QUIT: closing its stream ends the handler
}

-- Each client in its own task; the group waits for all of them.
rem.group(function(g)
  for i, lines in ipairs(sessions) do
    g:spawn(function()
      local c <close> = rem.tcp.connect(host, port, { timeout = 2 })
      for _, line in ipairs(lines) do
        c:write(line, "\n")
        print(("client %d: %-32s -> %s"):format(i, line, c:read("l")))
      end
    end)
  end
end)

if serve_for > 0 then
  print(("serving %g s more on port %d"):format(serve_for, port))
  pcall(rem.timeout, serve_for, srv.wait, srv)
end
print("closing the server")
-- srv's <close> runs here: it stops accepting, cancels what is left and waits for it.
