-- luacluster.lib.cron: standard five-field cron specs ("m h dom mon dow", as Vixie cron reads
-- them) and the next time one matches, in local time. Pure: no clock of its own.
--   minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-7 or
--   sun-sat (0 and 7 are Sunday); each field a list "a,b" of "*", "n", "a-b", "*/n", "a-b/n".
--   When both day fields are restricted (neither starts with "*"), a day matches when either
--   does (Vixie cron's rule); otherwise both must match.
--
--   local c, err = cron.parse("*/15 9-17 * * mon-fri")
--   local t = cron.next(c, os.time())  -- the first matching minute after t (epoch seconds)

local os_date, os_time, floor = os.date, os.time, math.floor

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9, oct = 10,
  nov = 11, dec = 12 }
local DAYS = { sun = 0, mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6 }

-- name, low, high, names
local FIELDS = {
  { "minute", 0, 59 },
  { "hour", 0, 23 },
  { "day of month", 1, 31 },
  { "month", 1, 12, MONTHS },
  { "day of week", 0, 7, DAYS },
}
local SEARCH_YEARS = 9 -- "29 feb" may wait 8 years (2096 -> 2104); past that a spec never matches


local function value(text, f)
  local n = text:match("^%d+$") and tonumber(text)
  if not n and f[4] then
    n = f[4][text:lower()]
  end
  if not n then
    return nil, string.format("'%s' is not a %s", text, f[1])
  end
  if n < f[2] or n > f[3] then
    return nil, string.format("%s %s is out of range %d-%d", f[1], text, f[2], f[3])
  end
  return n
end


-- one field -> set { [n] = true } | nil, err
local function field(text, f)
  local set = {}
  for item in (text .. ","):gmatch("([^,]*),") do
    if item == "" then
      return nil, string.format("empty item in %s field '%s'", f[1], text)
    end
    local range, step = item:match("^([^/]+)/(.*)$")
    range = range or item
    local by = 1
    if step then
      by = step:match("^%d+$") and tonumber(step)
      if not by or by < 1 then
        return nil, string.format("bad step '%s' in %s field '%s'", step, f[1], text)
      end
    end
    local a, b
    if range == "*" then
      a, b = f[2], f[3]
    else
      local lo, hi = range:match("^([^-]+)-([^-]+)$")
      local err
      if lo then
        a, err = value(lo, f)
        if not a then return nil, err end
        b, err = value(hi, f)
        if not b then return nil, err end
        if a > b then
          return nil, string.format("range %s goes backwards in %s field '%s'", range, f[1], text)
        end
      elseif step then
        return nil, string.format("a step needs '*' or a range a-b before it: '%s' in %s field", item, f[1])
      else
        a, err = value(range, f)
        if not a then return nil, err end
        b = a
      end
    end
    for n = a, b, by do
      set[n] = true
    end
  end
  return set
end


-- parse(spec) -> cron | nil, err
local function parse(spec)
  if type(spec) ~= "string" then
    return nil, "a cron spec must be a string"
  end
  local parts = {}
  for p in spec:gmatch("%S+") do
    parts[#parts + 1] = p
  end
  if #parts ~= 5 then
    return nil, string.format("'%s' has %d fields, a cron spec has 5: minute hour day-of-month month day-of-week",
      spec, #parts)
  end
  local sets = {}
  for i, f in ipairs(FIELDS) do
    local set, err = field(parts[i], f)
    if not set then
      return nil, "cron '" .. spec .. "': " .. err
    end
    sets[i] = set
  end
  local dow = sets[5]
  if dow[7] then
    dow[0], dow[7] = true, nil
  end
  return {
    spec = spec, minute = sets[1], hour = sets[2], dom = sets[3], month = sets[4], dow = dow,
    dom_star = parts[3]:sub(1, 1) == "*", dow_star = parts[5]:sub(1, 1) == "*",
  }
end


local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local WEEKDAY_SHIFT = { 0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4 } -- Sakamoto's day of week


local function days_in(y, m)
  if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then
    return 29
  end
  return MONTH_DAYS[m]
end


-- the day of week of a date of the calendar, 0 = Sunday
local function weekday(y, m, d)
  if m < 3 then
    y = y - 1
  end
  return (y + floor(y / 4) - floor(y / 100) + floor(y / 400) + WEEKDAY_SHIFT[m] + d) % 7
end


local function day_matches(c, y, m, d)
  local by_dom, by_dow = c.dom[d] == true, c.dow[weekday(y, m, d)] == true
  if c.dom_star or c.dow_star then
    return by_dom and by_dow
  end
  return by_dom or by_dow
end


-- next(c, after) -> the first minute after `after` (epoch seconds) at which c matches, in
-- local time, as epoch seconds | nil when it matches none within SEARCH_YEARS years.
-- It walks the wall clock's calendar (its own arithmetic: no daylight saving time in it) and
-- turns a match into an instant last, so that it always moves forward and ends. Across
-- daylight saving time, as Vixie cron: a wall time the spring-forward gap skips (02:30, or
-- 00:00 where the change is at midnight) is run once right after the gap (os.time's reading
-- of a time that does not exist); a wall time the fall-back hour repeats is run once.
local function next_time(c, after)
  local d = os_date("*t", floor(after))
  local y, mo, dd, h, mi = d.year, d.month, d.day, d.hour, d.min + 1
  local last_year = y + SEARCH_YEARS
  while true do
    if mi > 59 then
      h, mi = h + 1, 0
    end
    if h > 23 then
      dd, h = dd + 1, 0
    end
    if mo > 12 then
      y, mo = y + 1, 1
    end
    if dd > days_in(y, mo) then
      mo, dd = mo + 1, 1
      if mo > 12 then
        y, mo = y + 1, 1
      end
    end
    if y > last_year then
      return nil
    end
    if not c.month[mo] then
      mo, dd, h, mi = mo + 1, 1, 0, 0
    elseif not day_matches(c, y, mo, dd) then
      dd, h, mi = dd + 1, 0, 0
    elseif not c.hour[h] then
      h, mi = h + 1, 0
    elseif not c.minute[mi] then
      mi = mi + 1
    else
      local t = os_time({ year = y, month = mo, day = dd, hour = h, min = mi, sec = 0 })
      if t > after then
        return t
      end
      mi = mi + 1 -- the fall-back hour's second pass reads as the first: that one has run
    end
  end
end


return {
  parse = parse,
  next = next_time,
}
