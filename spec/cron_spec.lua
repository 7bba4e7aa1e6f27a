-- lib/cron.lua in-process: five-field specs as Vixie cron reads them (numbers, *, ranges,
-- lists, steps, month and weekday names, 0 and 7 for Sunday), the errors of bad specs, and the
-- next matching minute in local time: month ends, leap years, the day-of-month / day-of-week
-- OR rule.
local cron = require("luacluster.lib.cron")


-- a local time as epoch seconds
local function at(y, mo, d, h, mi)
  return os.time({ year = y, month = mo, day = d, hour = h or 0, min = mi or 0, sec = 0 })
end


-- "YYYY-MM-DD HH:MM" of an epoch time, local
local function show(t)
  return t and os.date("%Y-%m-%d %H:%M", t) or "never"
end


local function next_of(spec, y, mo, d, h, mi)
  local c = assert(cron.parse(spec))
  return show(cron.next(c, at(y, mo, d, h, mi)))
end


-- the next n matches from a time (shown by show, or by fmt)
local function series(spec, n, y, mo, d, h, mi, fmt)
  local c = assert(cron.parse(spec))
  local t, out = at(y, mo, d, h, mi), {}
  for i = 1, n do
    t = cron.next(c, t)
    out[i] = (fmt or show)(t)
  end
  return out
end


-- the members of a parsed field's set, in order
local keys = require("luacluster.lib.tables").sorted_keys


describe("cron.parse", function()
  it("reads numbers, *, ranges, lists and steps", function()
    local c = assert(cron.parse("0,30 9-11 */10 1-12/5 *"))
    assert.same({ 0, 30 }, keys(c.minute))
    assert.same({ 9, 10, 11 }, keys(c.hour))
    assert.same({ 1, 11, 21, 31 }, keys(c.dom))
    assert.same({ 1, 6, 11 }, keys(c.month))
    assert.same({ 0, 1, 2, 3, 4, 5, 6 }, keys(c.dow))
    assert.same({ 5, 10, 15, 20 }, keys(assert(cron.parse("5-20/5 * * * *")).minute))
    assert.same({ 0, 7, 14, 21, 28, 35, 42, 49, 56 }, keys(assert(cron.parse("*/7 * * * *")).minute))
  end)

  it("reads month and weekday names in any case, in ranges and lists, and 7 as Sunday", function()
    local c = assert(cron.parse("* * * Jan,MAR-may * "))
    assert.same({ 1, 3, 4, 5 }, keys(c.month))
    assert.same({ 1, 2, 3, 4, 5 }, keys(assert(cron.parse("* * * * mon-fri")).dow))
    assert.same({ 0, 6 }, keys(assert(cron.parse("* * * * sat,sun")).dow))
    assert.same({ 0 }, keys(assert(cron.parse("* * * * 7")).dow))
    assert.same({ 0, 5, 6 }, keys(assert(cron.parse("* * * * 5-7")).dow))
    assert.same({ 0, 1, 2, 3, 4, 5, 6 }, keys(assert(cron.parse("* * * * 0-7")).dow))
  end)

  it("refuses bad specs with a reason", function()
    local cases = {
      { "* * * *", "has 4 fields" },
      { "* * * * * *", "has 6 fields" },
      { "60 * * * *", "minute 60 is out of range 0%-59" },
      { "* 24 * * *", "hour 24 is out of range 0%-23" },
      { "* * 0 * *", "day of month 0 is out of range 1%-31" },
      { "* * 32 * *", "day of month 32 is out of range" },
      { "* * * 13 *", "month 13 is out of range 1%-12" },
      { "* * * * 8", "day of week 8 is out of range 0%-7" },
      { "5-1 * * * *", "range 5%-1 goes backwards" },
      { "*/0 * * * *", "bad step '0'" },
      { "*/x * * * *", "bad step 'x'" },
      { "1,,2 * * * *", "empty item" },
      { "x * * * *", "'x' is not a minute" },
      { "* * * foo *", "'foo' is not a month" },
      { "* * * * mon-funday", "'funday' is not a day of week" },
      { "* * * jan *x", nil },
      { "5/10 * * * *", "a step needs" },
      { "-1 * * * *", nil },
      -- a number too big for an integer is named as written
      { "99999999999999999999 * * * *", "minute 99999999999999999999 is out of range 0%-59" },
    }
    for _, case in ipairs(cases) do
      local c, err = cron.parse(case[1])
      assert.is_nil(c, case[1])
      assert.is_string(err, case[1])
      if case[2] then
        assert.truthy(err:find(case[2]), case[1] .. " -> " .. err)
      end
    end
    assert.is_nil((cron.parse(42)))
  end)
end)


describe("cron.next", function()
  it("is the next matching minute strictly after the time", function()
    assert.equal("2024-03-10 12:01", next_of("* * * * *", 2024, 3, 10, 12, 0))
    assert.equal("2024-03-10 12:15", next_of("*/15 * * * *", 2024, 3, 10, 12, 0))
    assert.equal("2024-03-10 13:00", next_of("0 * * * *", 2024, 3, 10, 12, 0))
    assert.equal("2024-03-11 09:30", next_of("30 9 * * *", 2024, 3, 10, 9, 30))
    -- seconds into the minute do not count as the minute
    local c = assert(cron.parse("* * * * *"))
    assert.equal("2024-03-10 12:01", show(cron.next(c, at(2024, 3, 10, 12, 0) + 59)))
  end)

  it("rolls over month ends and year ends", function()
    assert.equal("2024-05-01 00:00", next_of("0 0 * * *", 2024, 4, 30, 23, 59))
    assert.equal("2025-01-01 00:00", next_of("0 0 1 * *", 2024, 12, 31, 23, 59))
    -- the 31st only in the months that have one
    assert.same({ "2024-01-31 00:00", "2024-03-31 00:00", "2024-05-31 00:00", "2024-07-31 00:00" },
      series("0 0 31 * *", 4, 2024, 1, 1, 0, 0))
    -- day 30 skips February
    assert.same({ "2023-01-30 00:00", "2023-03-30 00:00" }, series("0 0 30 * *", 2, 2023, 1, 1))
  end)

  it("finds 29 February in leap years only (2100 is not one)", function()
    assert.same({ "2024-02-29 12:00", "2028-02-29 12:00" }, series("0 12 29 2 *", 2, 2023, 6, 1))
    assert.equal("2104-02-29 00:00", next_of("0 0 29 feb *", 2096, 3, 1))
    -- a date that never comes
    assert.is_nil(cron.next(assert(cron.parse("0 0 30 2 *")), at(2024, 1, 1)))
    assert.is_nil(cron.next(assert(cron.parse("0 0 31 apr *")), at(2024, 1, 1)))
  end)

  it("matches either day field when both are restricted (Vixie cron's OR rule)", function()
    -- the 13th or any Friday: Fri 2024-09-06, Fri 2024-09-13 (both), Fri 20, Fri 27, Sun 2024-10-13
    -- (2024-09-01 is a Sunday)
    assert.same({ "2024-09-06 00:00", "2024-09-13 00:00", "2024-09-20 00:00", "2024-09-27 00:00",
      "2024-10-04 00:00", "2024-10-11 00:00", "2024-10-13 00:00" }, series("0 0 13 * fri", 7, 2024, 9, 1))
    -- one day field '*' (or starting with '*'): the other one alone decides
    assert.same({ "2024-09-06 00:00", "2024-09-13 00:00" }, series("0 0 * * 5", 2, 2024, 9, 1))
    assert.same({ "2024-09-13 00:00", "2024-10-13 00:00" }, series("0 0 13 * *", 2, 2024, 9, 1))
    -- "*/2" in the day of week counts as '*' for the rule: odd days that are also Sun/Tue/Thu/Sat
    assert.same({ "2024-09-01 00:00", "2024-09-03 00:00", "2024-09-05 00:00", "2024-09-07 00:00",
      "2024-09-15 00:00" }, series("0 0 1-7,15 * */2", 5, 2024, 8, 31, 23, 59))
  end)

  it("counts Sunday as 0 and as 7, and reads weekday ranges", function()
    assert.equal("2024-09-08 06:00", next_of("0 6 * * 7", 2024, 9, 2))
    assert.equal("2024-09-08 06:00", next_of("0 6 * * 0", 2024, 9, 2))
    assert.equal("2024-09-08 06:00", next_of("0 6 * * sun", 2024, 9, 2))
    -- weekdays at 9:00 from Friday evening: Monday
    assert.equal("2024-09-09 09:00", next_of("0 9 * * mon-fri", 2024, 9, 6, 18, 0))
  end)

  it("combines month, day and hour lists", function()
    assert.same({ "2024-06-01 08:00", "2024-06-01 20:00", "2024-06-15 08:00", "2024-06-15 20:00",
      "2024-12-01 08:00" }, series("0 8,20 1,15 jun,dec *", 5, 2024, 1, 1))
  end)
end)


-- the spec process's local time zone is TZ=zone while fn runs (then what it was)
local function in_zone(zone, fn)
  local ffi = require("ffi")
  pcall(ffi.cdef, "int setenv(const char *, const char *, int); int unsetenv(const char *); void tzset(void);")
  local was = os.getenv("TZ")
  ffi.C.setenv("TZ", zone, 1)
  ffi.C.tzset()
  local ok, err = pcall(fn)
  if was then
    ffi.C.setenv("TZ", was, 1)
  else
    ffi.C.unsetenv("TZ")
  end
  ffi.C.tzset()
  assert(ok, err)
end


-- "YYYY-MM-DD HH:MM ZONE" of an epoch time, local
local function show_z(t)
  return t and os.date("%Y-%m-%d %H:%M %Z", t) or "never"
end


local function series_z(spec, n, y, mo, d, h, mi)
  return series(spec, n, y, mo, d, h, mi or 0, show_z)
end


describe("cron.next across daylight saving time", function()
  it("runs a time the spring-forward gap skips once, right after the gap, as Vixie cron does", function()
    in_zone("America/New_York", function()
      -- 2024-03-10: 02:00 EST is 03:00 EDT; 02:30 does not exist that day
      assert.same({ "2024-03-09 02:30 EST", "2024-03-10 03:30 EDT", "2024-03-11 02:30 EDT" },
        series_z("30 2 * * *", 3, 2024, 3, 8, 12))
      -- every 20 minutes: the gap's runs come once after it, then the hour goes on as usual
      assert.same({ "2024-03-10 01:40 EST", "2024-03-10 03:00 EDT", "2024-03-10 03:20 EDT",
        "2024-03-10 03:40 EDT" }, series_z("*/20 * * * *", 4, 2024, 3, 10, 1, 30))
    end)
    in_zone("America/Havana", function()
      -- 2024-03-10: midnight does not exist in Havana (00:00 CST is 01:00 CDT): a daily job at
      -- midnight runs at 01:00 that day, not a day later
      assert.same({ "2024-03-09 00:00 CST", "2024-03-10 01:00 CDT", "2024-03-11 00:00 CDT" },
        series_z("0 0 * * *", 3, 2024, 3, 8, 12))
    end)
  end)

  it("runs a time the fall-back hour repeats once, and always ends and moves forward", function()
    in_zone("America/New_York", function()
      local got = series_z("30 1 * * *", 3, 2024, 11, 2, 12)
      assert.equal("2024-11-03 01:30", got[1]:sub(1, 16))
      assert.same({ "2024-11-04 01:30 EST", "2024-11-05 01:30 EST" }, { got[2], got[3] })
    end)
    for _, zone in ipairs({ "America/New_York", "America/Havana", "America/Santiago", "Australia/Lord_Howe" }) do
      in_zone(zone, function()
        for _, spec in ipairs({ "*/20 * * * *", "0 0 * * *", "30 2 * * *", "15 1 * * *" }) do
          local c = assert(cron.parse(spec))
          local t, stop = at(2024, 1, 1), at(2025, 1, 1)
          while t < stop do
            local n = cron.next(c, t)
            assert(n and n > t, zone .. " " .. spec .. " after " .. show_z(t) .. ": " .. show_z(n))
            t = n
          end
        end
      end)
    end
  end)
end)
