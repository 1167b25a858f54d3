-- Run by examples/host/host.c: the host owns the loop; this script only uses rem.
-- It returns the function the host starts as a task.
local rem = require "rem"

-- A pretend connection: opening and closing take time, as real ones do.
local function connect(id)
  rem.sleep(0.002 * id)
  return setmetatable({ id = id }, { __close = function(self)
    rem.sleep(0.001)
    print(string.format("script: connection %d closed", self.id))
  end })
end

return function(n)
  -- One task fails and nobody joins it: the host's error hook reports it.
  rem.spawn(function() error("a background job failed") end)
  local served = 0
  rem.group(function(g)
    for id = 1, n do
      g:spawn(function()
        local conn <close> = connect(id)
        rem.timeout(1, rem.sleep, 0.01)
        served = served + 1
      end)
    end
  end)
  print(string.format("script: served %d connections", served))
  return served
end
