-- A worker object in the master has one owner, lua/luacluster/master/core.lua: its functions
-- are the only writers of the object's fields (state, exited_after_disconnect and the private
-- ones), and "ready" has one definition there (worker:is_ready()). The master's other parts
-- keep what they know about a worker in their own tables keyed by the worker, and change its
-- state through the core's functions (listen_granted, kill_stuck, abandon, ...).
-- This reads the sources: an assignment to a field of a variable that holds a worker (the
-- library's names for one: w, old, new, x, own, pw, worker) outside the core fails it.

local ROOT = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/worker_state_spec%.lua$") or ".")
local LIB = ROOT .. "/lua/luacluster/"
local OWNER = "master/core.lua"
local WORKER_VARS = { "w", "old", "new", "x", "own", "pw" }


local function files()
  local list = {}
  local p = io.popen("cd '" .. LIB .. "' && find . -name '*.lua' | sort")
  for rel in p:lines() do
    list[#list + 1] = rel:gsub("^%./", "")
  end
  p:close()
  return list
end


local function read(rel)
  local f = assert(io.open(LIB .. rel))
  local s = f:read("*a")
  f:close()
  return s
end


-- the master's side only: the worker's own process has other objects under these names
local function master_side(rel)
  return rel:match("^master/") or rel == "pool.lua" or rel == "worker/peers.lua" or rel:match("^sched/")
end


describe("a worker object in the master", function()
  it("is written only by master/core.lua", function()
    assert.truthy(read(OWNER):find("local function new_worker", 1, true)) -- the owner makes them
    local found = {}
    for _, rel in ipairs(files()) do
      if rel ~= OWNER and master_side(rel) then
        local n = 0
        for line in (read(rel) .. "\n"):gmatch("([^\n]*)\n") do
          n = n + 1
          local code = line:gsub("%-%-.*$", "")
          for _, v in ipairs(WORKER_VARS) do
            -- v.field = value (not ==), at the start of a statement
            local field = code:match("^%s*" .. v .. "%.([%w_]+)%s*=[^=]")
            if field then
              found[#found + 1] = rel .. ":" .. n .. ": " .. v .. "." .. field
            end
          end
        end
      end
    end
    assert.equal("", table.concat(found, "\n"))
  end)

  it("has one definition of ready: worker:is_ready() in master/core.lua", function()
    local found = {}
    for _, rel in ipairs(files()) do
      if rel ~= OWNER then
        local src = read(rel)
        if src:find("%._ready[^_%w]") or src:find("function%s+[%w_.:]*is_ready%s*%(") then
          found[#found + 1] = rel
        end
      end
    end
    assert.equal("", table.concat(found, "\n"))
    assert.truthy(read(OWNER):find("function worker_mt:is_ready()", 1, true))
  end)
end)
