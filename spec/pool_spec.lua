-- luacluster.pool used from a worker: the worker asks the master, the master fans the tasks out
-- to the ready workers (the asking one included) and the caller gets the results, in both the
-- waiting and the callback form; errors come back as from the master's own map.
local H = require("helper")


describe("pool.map in a worker", function()
  after_each(function()
    H.cleanup()
  end)

  it("fans the tasks out through the master to every worker, and returns the results in order", function()
    local src = [[
local pool = require("luacluster.pool")
if cluster.is_master then
  cluster.setup{ workers = 2 }
  local online = 0
  cluster.on("online", function()
    online = online + 1
    if online == 2 then cluster.workers[1]:send("go") end
  end)
  cluster.on("message", function(w, msg) say(msg) if msg == "done" then cluster.stop() end end)
else
  pool.handle(function(task, index)
    if task == "boom" then error("task blew up") end
    timer.sleep(30)
    return { square = task * task, by = cluster.worker.id, index = index }
  end)
  cluster.worker:on("message", function(msg)
    if msg ~= "go" then return end
    local me = cluster.worker
    -- the waiting form
    local results, err = pool.map({ 1, 2, 3, 4, 5, 6 })
    local squares, by = {}, {}
    for i = 1, results.n do
      squares[#squares + 1] = results[i].square
      by[results[i].by] = true
    end
    me:send("wait " .. table.concat(squares, ",") .. " n=" .. results.n .. " err=" .. tostring(err)
      .. " workers=" .. (by[1] and "1" or "") .. (by[2] and "2" or ""))
    -- a task that raises: nil, err, partial results
    local r2, err2, partial = pool.map({ 3, "boom" }, { per_worker = 2 })
    me:send("fail " .. tostring(r2) .. " " .. tostring(err2):gsub("\n.*", "") .. " partial=" .. tostring(partial and partial.n))
    -- the callback form; then an empty map
    pool.map({ 7, 8 }, { scheduler = "least_connections" }, function(r3, err3)
      me:send("cb " .. r3[1].square .. "," .. r3[2].square .. " err=" .. tostring(err3))
      local r4 = pool.map({})
      me:send("empty n=" .. tostring(r4.n))
      -- a scheduler given as a function cannot travel to the master
      local ok, ferr = pcall(function()
        pool.map({ 1 }, { scheduler = function(ws) return ws[1] end }) -- function scheduler
      end)
      me:send("fn " .. tostring(ok) .. " " .. tostring(ferr))
      me:send("done")
    end)
  end)
end
]]
    local p = H.start_app(src, { "-w", 2 })
    assert.equal(0, (p:wait(20000)), p:output())
    local out = p:output()
    assert.matches("wait 1,4,9,16,25,36 n=6 err=nil workers=12", out, 1, true)
    assert.matches("fail nil task 2 failed on worker %d %(pid %d+%): [^\n]*task blew up partial=2", out)
    assert.matches("cb 49,64 err=nil", out, 1, true)
    assert.matches("empty n=0", out, 1, true)
    assert.matches("fn false [^\n]*/app.lua:%d+: pool.map: in a worker, scheduler must be a built%-in name", out)
  end)

  it("fails a worker's map with the master's reason: no live worker, a bad option", function()
    local src = [[
local pool = require("luacluster.pool")
if cluster.is_master then
  cluster.setup{ workers = 1, restart = false }
  cluster.on("message", function(w, msg) say(msg) if msg == "done" then cluster.stop() end end)
else
  -- no pool.handle here: the task fails with the reason
  timer.after(0, function()
    local r, err = pool.map({ 1 })
    cluster.worker:send("nohandler " .. tostring(r) .. " " .. tostring(err))
    r, err = pool.map({ 1 }, { scheduler = "nosuch" })
    cluster.worker:send("sched " .. tostring(r) .. " " .. tostring(err))
    cluster.worker:send("done")
  end)
end
]]
    local p = H.start_app(src, { "-w", 1 })
    assert.equal(0, (p:wait(20000)), p:output())
    local out = p:output()
    assert.matches("nohandler nil task 1 failed on worker 1 [^\n]*has no pool.handle", out)
    assert.matches("sched nil [^\n]*unknown scheduler 'nosuch'", out)
  end)
end)
