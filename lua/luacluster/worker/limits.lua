-- luacluster.worker.limits: the worker's half of the resource limits (master/limits.lua): it
-- answers the master's heartbeat pings from its event loop, and under max_requests counts the
-- requests its HTTP servers served and asks the master for its replacement once (the master
-- then replaces it as a reload does one slot).
local core = require("luacluster.core")
local stats = require("luacluster.worker.stats")

local REQUEST_POLL_MS = 100       -- how often a worker with max_requests looks at its counters


-- plugs the worker's half into the worker's side (worker/plugins.lua)
local function attach_worker(worker)
  local poll, asked
  worker.register_op("ping", function(msg)
    local ch = worker.channel()
    if ch and not ch:is_closed() then
      ch:control({ op = "pong", seq = msg.seq })
    end
  end)
  worker.register_op("limits", function(msg)
    local max = tonumber(msg.max_requests) or 0
    if poll then
      poll:close()
      poll = nil
    end
    if max <= 0 then
      return
    end
    poll = core.timer_new(function()
      local n = stats.totals()
      if n >= max and not asked then
        asked = true -- once: the master replaces this worker, which then drains
        local ch = worker.channel()
        if ch and not ch:is_closed() then
          ch:control({ op = "recycle", requests = n })
        end
        poll:close()
        poll = nil
      end
    end)
    poll:unref()
    poll:start(REQUEST_POLL_MS, REQUEST_POLL_MS)
  end)
end



return {
  attach_worker = attach_worker,
}
