-- Counts the lines, words and bytes of files, as wc does, reading them through rem.fs
-- (libuv's threadpool: the loop never blocks on the disk). Each file is read in a task of
-- its own, all at once; each file is closed when its block ends, however it ends.
--
--   build/bin/rem examples/read_file.lua [file...]     (this script itself by default)
local rem = require "rem"

local paths = { ... }
if #paths == 0 then paths = { arg and arg[0] or "examples/read_file.lua" } end

local function count(path)
  local st = rem.fs.stat(path)
  if st.type ~= "file" then error(rem.Error(path .. ": not a regular file", "EISDIR")) end
  local f <close> = rem.fs.open(path, "rb")
  local lines, words, bytes = 0, 0, 0
  for line in f:lines("L") do  -- "L" keeps the newline, so bytes add up
    bytes = bytes + #line
    if line:sub(-1) == "\n" then lines = lines + 1 end
    for _ in line:gmatch("%S+") do words = words + 1 end
  end
  return { lines = lines, words = words, bytes = bytes, size = st.size }
end

local results, failures = {}, {}
local t0 = rem.now()
rem.group(function(g)
  for i, path in ipairs(paths) do
    g:spawn(function()
      -- A missing file is reported and the others still counted.
      local ok, res = pcall(count, path)
      if ok then results[i] = res else failures[i] = res end
    end)
  end
end)

local total = { lines = 0, words = 0, bytes = 0 }
for i, path in ipairs(paths) do
  local r = results[i]
  if r then
    print(("%8d %8d %8d %s"):format(r.lines, r.words, r.bytes, path))
    assert(r.bytes == r.size, "read fewer bytes than stat reported")
    for k in pairs(total) do total[k] = total[k] + r[k] end
  else
    print(("%26s %s"):format("error:", tostring(failures[i])))
  end
end
if #paths > 1 then
  print(("%8d %8d %8d total"):format(total.lines, total.words, total.bytes))
end
print(("(%d file%s in %.1f ms)"):format(#paths, #paths == 1 and "" or "s",
  (rem.now() - t0) * 1000))
