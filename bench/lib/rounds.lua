-- bench/lib/rounds.lua: the measuring loop of the wrk figures (1, 4, 5, 6). Every run (a
-- system and a load) is taken once per repeat, the order rotated by a prime stride from repeat
-- to repeat (A B C .. then D E .. A B ..), so that neighbours change and the machine's noise
-- lands on every system alike; a wrk result goes into the system's samples under its key.
local S = require("sys")

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

return M
