-- bench/lib/rounds.lua: the measuring loop of the wrk figures (1, 4, 5, 6, 8, 9, 13). Every run (a
-- system and a load) is taken once per repeat, the order rotated by a prime stride from repeat
-- to repeat (A B C .. then D E .. A B ..), so that neighbours change and the machine's noise
-- lands on every system alike; a wrk result goes into the system's samples under its key.
local S = require("sys")
local Sys = require("systems")

local M = {}

-- run(runs, repeats, what, seconds, fn): fn(run, rep) for every run in every repeat
function M.run(runs, repeats, what, seconds, fn)
  for rep = 1, repeats do
    S.log("%s: repeat %d/%d (%d runs of %d s)", what, rep, repeats, #runs, seconds)
    local n = #runs
    for k = 0, n - 1 do
      fn(runs[((k + (rep - 1) * 3) % n) + 1], rep)
    end
  end
end

-- record(d, key, rep, label, r, err): S.wrk's result r (or nil, err) as d[key][rep] (req/s;
-- NaN when wrk failed) and its failed requests added to d.failed[key]
function M.record(d, key, rep, label, r, err)
  if r then
    d[key][rep] = r.rps
    d.failed[key] = d.failed[key] + r.failed
    S.debug("  %-40s %-9s %10.0f req/s  failed %d", label, key, r.rps, r.failed)
  else
    S.log("  %s %s: %s", label, key, err)
    d[key][rep] = 0 / 0
  end
end

-- Figures 8, 9 and 13: each system of the list started once, ready, its answer to GET /
-- checked (o.body: the exact body of a 200, or o.check), warmed (cfg.out_warmup s each: Node's
-- proxy needs about 2 s of load before its JIT has compiled the path; 8k then 20k req/s here),
-- then wrk -t1 -c64 on / rotated over the repeats.
-- systems: { id=, label=, kind=, start= } (systems.lua); o = { what=, key=, body= } (or check =
-- function(status, body) -> true for a good answer, instead of body)
-- -> data[id] = { label=, kind=, [key] = {rps...}, failed = { [key] = n } }; stops what it started
function M.keepalive_figure(cfg, systems, o)
  local servers, data, runs = {}, {}, {}
  local ok, err = pcall(function()
    S.log("%s: starting %d servers", o.what, #systems)
    for _, s in ipairs(systems) do servers[s.id] = s.start() end
    for _, s in ipairs(systems) do
      local srv = servers[s.id]
      Sys.ready(srv)
      local status, body = S.get(srv.port, "/", 3000)
      local good
      if o.check then good = o.check(status, body) else good = status == 200 and body == o.body end
      if not good then
        error(string.format("%s: status %s, body %q\n%s", s.label, tostring(status), tostring(body):sub(1, 300),
          srv.proc:output():sub(-1000)), 0)
      end
      data[s.id] = { label = s.label, kind = s.kind, [o.key] = {}, failed = { [o.key] = 0 } }
      runs[#runs + 1] = { s = s }
    end
    local function wrk(run, seconds)
      return S.wrk{ port = servers[run.s.id].port, path = "/", seconds = seconds, connections = 64 }
    end
    if (cfg.out_warmup or 0) > 0 then
      for _, run in ipairs(runs) do wrk(run, cfg.out_warmup) end
    end
    M.run(runs, cfg.repeats, o.what, cfg.duration, function(run, rep)
      local r, werr = wrk(run, cfg.duration)
      M.record(data[run.s.id], o.key, rep, run.s.label, r, werr)
    end)
  end)
  for _, srv in pairs(servers) do Sys.stop(srv, 2000) end
  if not ok then error(err, 0) end
  return data
end

return M
