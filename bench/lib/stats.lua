-- bench/lib/stats.lua: medians, spreads and paired ratios over repeats.
local M = {}

local function sorted(xs)
  local t = {}
  for _, x in ipairs(xs) do
    if x == x and x ~= nil then t[#t + 1] = x end
  end
  table.sort(t)
  return t
end

function M.median(xs)
  local t = sorted(xs)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

-- { median, min, max, n, spread_pct = (max-min)/median*100 }
function M.summary(xs)
  local t = sorted(xs)
  if #t == 0 then return { n = 0 } end
  local med = M.median(t)
  return {
    median = med, min = t[1], max = t[#t], n = #t,
    spread_pct = med ~= 0 and (t[#t] - t[1]) / med * 100 or 0,
    samples = xs,
  }
end

-- Ratios a[i]/b[i] of the same repeat (measured next to each other), summarised.
-- For "lower is better" figures the ratio is still a/b; the report says which way is good.
function M.paired(a, b)
  local r = {}
  for i = 1, math.min(#a, #b) do
    if a[i] and b[i] and b[i] ~= 0 then r[#r + 1] = a[i] / b[i] end
  end
  return M.summary(r)
end

return M
