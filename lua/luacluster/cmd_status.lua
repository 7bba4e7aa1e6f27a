-- luacluster status [app.lua | --control PATH] [--json]: one row per worker.
local common = require("luacluster.cli.common")
local json = require("luacluster.lib.json")

local format, run


local function human_bytes(n)
  if n >= 1048576 then
    return string.format("%.1fM", n / 1048576)
  end
  return string.format("%dK", math.floor(n / 1024))
end


local function human_time(s)
  if s >= 3600 then
    return string.format("%dh%02dm", math.floor(s / 3600), math.floor(s % 3600 / 60))
  elseif s >= 60 then
    return string.format("%dm%02ds", math.floor(s / 60), s % 60)
  end
  return s .. "s"
end


function format(st)
  local out = {}
  out[#out + 1] = string.format("master pid %d, mode %s, generation %d, up %s, rss %s, lua heap %s",
    st.pid, tostring(st.mode), st.generation, human_time(st.uptime), human_bytes(st.rss or 0),
    human_bytes((st.lua_heap_kb or 0) * 1024))
  if st.upgrade then -- (the old master answers until the switch)
    out[#out + 1] = string.format("upgrade in progress: new master pid %d from %s, %s for %s",
      st.upgrade.pid, tostring(st.upgrade.binary), tostring(st.upgrade.step),
      human_time(math.floor((st.upgrade.elapsed_ms or 0) / 1000)))
  end
  out[#out + 1] = string.format("%-4s %-8s %-4s %-10s %-8s %-9s %-6s %-8s %s",
    "id", "pid", "gen", "state", "uptime", "requests", "conns", "rss", "restarts")
  for _, w in ipairs(st.workers) do
    local row = string.format("%-4d %-8s %-4d %-10s %-8s %-9d %-6d %-8s %d",
      w.id, w.pid and tostring(w.pid) or "-", w.generation, w.state, human_time(w.uptime), w.requests, w.connections,
      human_bytes(w.rss), w.restarts)
    if (w.websockets or 0) > 0 then -- of its conns (messages in and out: --json, the metrics)
      row = row .. string.format("  (%d websockets)", w.websockets)
    end
    -- a crash-looping slot: when it starts again, and why it failed last
    if w.restart_in then
      row = row .. string.format("  (restart in %d ms)", w.restart_in)
    end
    if w.last_error then
      row = row .. "  last error: " .. w.last_error
    end
    out[#out + 1] = row
  end
  -- cluster.job: one row per job (times in UTC)
  if st.jobs and #st.jobs > 0 then
    out[#out + 1] = string.format("%-16s %-22s %-6s %-6s %-6s %-21s %-9s %-21s %s",
      "job", "schedule", "runs", "fail", "skip", "last run", "last ms", "next run", "last error")
    for _, j in ipairs(st.jobs) do
      local row = string.format("%-16s %-22s %-6d %-6d %-6d %-21s %-9s %-21s %s", j.name, j.schedule, j.runs,
        j.failures, j.skipped, j.last_run or "-", j.last_ms and tostring(j.last_ms) or "-", j.next_run or "-",
        j.last_ok == false and tostring(j.last_error) or "-")
      if j.running then
        row = row .. (j.running > 0 and ("  (running on worker " .. j.running .. ")") or "  (running)")
      end
      out[#out + 1] = row
    end
  end
  for _, d in ipairs(st.shared_dicts or {}) do -- one row per shared dictionary
    out[#out + 1] = string.format("shared dict %s: capacity %s, used %s, entries %d, evictions %d",
      d.name, human_bytes(d.capacity), human_bytes(d.used), d.entries, d.evictions)
  end
  local ps = st.pubsub
  if ps and ps.published > 0 then
    out[#out + 1] = string.format("pubsub: %d publishes, %d forwarded to workers, %d delivered to WebSockets, %d slow subscribers closed",
      ps.published, ps.forwarded, ps.delivered, ps.slow_closed)
      .. ((ps.dropped or 0) > 0 and string.format(", %d dropped for workers not reading", ps.dropped) or "")
  end
  return table.concat(out, "\n") .. "\n"
end


function run(o)
  return common.run(o, function(path)
    local reply, code = common.ask(path, { cmd = "status" }, 10000)
    if not reply then
      return code
    end
    local st = reply.status
    if o.json then
      st.workers = json.array(st.workers)
      st.jobs = json.array(st.jobs or {})
      st.shared_dicts = json.array(st.shared_dicts or {})
      io.stdout:write(json.encode(st), "\n")
    else
      io.stdout:write(format(st))
    end
    return 0
  end)
end

return {
  format = format,
  run = run,
}
