-- Subprocess pipelines with rem.process: every child is reaped and every pipe closed,
-- however the script ends.
local rem = require "rem"

-- 1. An OS pipeline: `seq 1 100 | grep 7`, the first child's stdout handed to the second
--    as its stdin; rem reads the last one's output.
do
  local seq <close> = rem.process.spawn { "seq", "1", "100", stdout = "pipe" }
  local grep <close> = rem.process.spawn { "grep", "7", stdin = seq.stdout, stdout = "pipe" }
  seq.stdout:close()  -- grep has its own copy of the pipe
  local found = {}
  for line in grep.stdout:lines() do found[#found + 1] = line end
  print(("seq | grep 7: %d lines: %s"):format(#found, table.concat(found, " ")))
  print("exit codes:", (seq:wait()), (grep:wait()))
end

-- 2. A pipeline pumped through Lua: one task feeds `tr` while another reads its output,
--    at the same time (a writer alone could fill the pipe and wait forever).
do
  local tr <close> = rem.process.spawn { "tr", "a-z", "A-Z", stdin = "pipe", stdout = "pipe" }
  local words = { "tasks", "scopes", "groups", "streams", "processes" }
  rem.group(function(g)
    g:spawn(function()
      for _, w in ipairs(words) do tr.stdin:write(w, "\n") end
      tr.stdin:close()  -- tr sees the end of its input and exits
    end)
    g:spawn(function()
      for line in tr.stdout:lines() do print("tr: " .. line) end
    end)
  end)
  print("tr exited with", (tr:wait()))
end

-- 3. A child that would run for a minute, under a timeout: the timeout cancels the wait,
--    and closing the process (its <close>) ends the child with SIGTERM and reaps it.
do
  local p
  local ok, err = pcall(rem.timeout, 0.2, function()
    local child <close> = rem.process.spawn { "sleep", "60" }
    p = child
    child:wait()
  end)
  print(("sleep 60 under a 0.2 s timeout: %s; the child ended with %s"):format(
    rem.is_timeout(err) and "timed out" or tostring(ok), select(2, p:wait())))
end
