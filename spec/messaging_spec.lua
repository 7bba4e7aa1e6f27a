-- Messaging and coordination with the real binary: worker to worker (send_to, broadcast),
-- request/reply both ways and every way it can fail, ordered start and stop, and task
-- distribution (luacluster.pool). Apps print what they see; the spec reads the output.
local H = require("helper")

local function lines(p, pattern)
  local list = {}
  for line in p:output():gmatch("[^\n]+") do
    local m = { line:match(pattern) }
    if #m > 0 then
      list[#list + 1] = m
    end
  end
  return list
end


describe("messaging", function()
  after_each(function()
    H.cleanup()
  end)

  describe("send_to and broadcast", function()
    it("returns nil, err at once for a worker id that does not exist, and delivers to one that does", function()
      local p = H.start_app([[
        if cluster.is_master then
          local n = 0
          cluster.on("online", function() n = n + 1 if n == 3 then cluster.workers[1]:send("go") end end)
          local got = 0
          cluster.on("message", function(w, msg)
            say(msg)
            got = got + 1
            if got == 4 then cluster.stop() end
          end)
        else
          local me = cluster.worker
          me:on("error", function(err) me:send("unexpected error event: " .. err) end)
          me:on("message", function(msg, handle, from)
            if msg == "go" then
              local ok, err = me:send_to(7, "nobody")
              me:send("send_to 7: " .. tostring(ok) .. " " .. tostring(err))
              assert(me:send_to(2, "hello"))
              assert(me:broadcast("all"))
            elseif from then
              me:send(string.format("worker %d got %s from %s", me.id, msg, tostring(from)))
            end
          end)
        end
      ]], { "-w", 3 })
      assert.equal(0, (p:wait(10000)), p:output())
      local out = p:output()
      assert.matches("send_to 7: nil send_to: there is no live worker 7", out, 1, true)
      assert.matches("worker 2 got hello from 1", out, 1, true)
      assert.matches("worker 2 got all from 1", out, 1, true)
      assert.matches("worker 3 got all from 1", out, 1, true)
      assert.not_matches("unexpected error event", out, 1, true)
    end)

    it("returns nil, err at once for a worker that has exited; broadcast reaches the live ones", function()
      local p = H.start_app([[
        if cluster.is_master then
          cluster.setup({ workers = 3, restart = false })
          local n, got = 0, 0
          cluster.on("online", function(w) n = n + 1 if n == 3 then cluster.workers[3]:send("exit") end end)
          -- everything the master sends after a worker's exit arrives after the news of it
          cluster.on("exit", function(w) if w.id == 3 then cluster.workers[1]:send("go") end end)
          cluster.on("message", function(w, msg)
            say(msg)
            got = got + 1
            if got == 2 then timer.after(100, function() cluster.stop() end) end
          end)
        else
          local me = cluster.worker
          me:on("error", function(err) me:send("unexpected error event: " .. err) end)
          me:on("message", function(msg, handle, from)
            if msg == "exit" then
              process.exit(0)
            elseif msg == "go" then
              local ok, err = me:send_to(3, "too late")
              me:send("send_to exited 3: " .. tostring(ok) .. " " .. tostring(err))
              assert(me:broadcast("all"))
            elseif from then
              me:send(string.format("worker %d got %s from %s", me.id, msg, tostring(from)))
            end
          end)
        end
      ]], {})
      assert.equal(0, (p:wait(10000)), p:output())
      local out = p:output()
      assert.matches("send_to exited 3: nil send_to: there is no live worker 3", out, 1, true)
      assert.matches("worker 2 got all from 1", out, 1, true)
      assert.not_matches("unexpected error event", out, 1, true)
    end)

    it("turns a send_to that races with a worker's exit into an error event (the master's ROUTE_FAIL)", function()
      local p = H.start_app([[
        if cluster.is_master then
          cluster.on("online", function(w) w:send("go") end)
          cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
        else
          local me = cluster.worker
          me:on("error", function(err) me:send("error event: " .. err) end)
          me:on("message", function(msg)
            -- under the live-set check, as a message sent just before the news of an exit is
            local ok = require("luacluster.worker.side").channel():route(9, "lost?")
            print("sent " .. tostring(ok))
          end)
        end
      ]], { "-w", 1 })
      assert.equal(0, (p:wait(10000)), p:output())
      assert.matches("sent true", p:output(), 1, true)
      assert.matches("error event: send_to: there is no live worker 9", p:output(), 1, true)
    end)

    it("keeps the order of 10,000 messages from one worker to another", function()
      local p = H.start_app([[
        local N = 10000
        if cluster.is_master then
          local n = 0
          cluster.on("online", function() n = n + 1 if n == 2 then cluster.workers[1]:send("go") end end)
          cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
        else
          local me, expect, bad = cluster.worker, 1, 0
          me:on("message", function(msg, handle, from)
            if msg == "go" then
              for i = 1, N do assert(me:send_to(2, { seq = i, pad = string.rep("p", i % 200) })) end
            elseif from == 1 then
              if msg.seq ~= expect or #msg.pad ~= msg.seq % 200 then bad = bad + 1 end
              expect = expect + 1
              if msg.seq == N then me:send(string.format("worker 2 got %d, %d out of order", expect - 1, bad)) end
            end
          end)
        end
      ]], { "-w", 2 })
      assert.equal(0, (p:wait(20000)), p:output())
      assert.matches("worker 2 got 10000, 0 out of order", p:output(), 1, true)
    end)
  end)

  describe("request/reply", function()
    it("matches the replies of 1,000 concurrent requests each way, answered out of order", function()
      local p = H.start_app([[
        local N = 1000
        if cluster.is_master then
          cluster.on("request", function(w, msg)
            if msg.i % 3 == 0 then timer.sleep(msg.i % 7) end -- replies leave out of order
            return { i = msg.i, sq = msg.i * msg.i, from = w.id }
          end)
          cluster.on("online", function(w)
            local ok, bad, left = 0, 0, N
            for i = 1, N do
              timer.after(0, function()
                local r, err = w:request({ i = i }, 20000)
                if r and r.i == i and r.neg == -i then ok = ok + 1 else bad = bad + 1 end
                left = left - 1
                if left == 0 then say("master->worker", ok, bad) end
              end)
            end
          end)
          cluster.on("message", function(w, msg) say(msg) if msg:match("^worker%->master") then timer.after(200, function() cluster.stop() end) end end)
        else
          cluster.worker:on("request", function(msg)
            if msg.i % 2 == 0 then timer.sleep(msg.i % 5) end
            return { i = msg.i, neg = -msg.i }
          end)
          timer.after(0, function()
            local ok, bad, left = 0, 0, 2 * N
            local function done(good)
              if good then ok = ok + 1 else bad = bad + 1 end
              left = left - 1
              if left == 0 then cluster.worker:send(string.format("worker->master %d %d", ok, bad)) end
            end
            for i = 1, N do
              -- the waiting form, each in its own coroutine
              timer.after(0, function()
                local r = cluster.worker:request({ i = i }, 20000)
                done(r and r.i == i and r.sq == i * i and r.from == 1)
              end)
              -- and the callback form, interleaved on the same channel
              local j = N + i
              assert(cluster.worker:request({ i = j }, 20000, function(r, err)
                done(r and r.i == j and r.sq == j * j)
              end))
            end
          end)
        end
      ]], { "-w", 1 })
      assert.equal(0, (p:wait(30000)), p:output())
      local out = p:output()
      assert.matches("master->worker 1000 0", out, 1, true)
      assert.matches("worker->master 2000 0", out, 1, true)
    end)

    it("returns nil, \"timeout\" and nil, err for a handler that raises, both ways; callback forms too", function()
      local p = H.start_app([[
        if cluster.is_master then
          cluster.on("request", function(w, msg)
            if msg == "raise" then error("master handler broke") end
            if msg == "slow" then timer.sleep(1000) end
            return "ok:" .. msg
          end)
          cluster.on("online", function(w)
            local r, err = w:request("slow", 100)
            say("m timeout", tostring(r), tostring(err))
            r, err = w:request("raise")
            say("m raise", tostring(r), tostring(err))
            w:request("raise", 2000, function(r2, err2)
              say("m cb3 raise", tostring(r2), tostring(err2))
              w:request("plain", function(r3, err3)
                say("m cb2 plain", tostring(r3), tostring(err3))
                w:send("your turn")
              end)
            end)
          end)
          cluster.on("message", function(w, msg) say(msg) if msg:match("^w cb2") then cluster.stop() end end)
        else
          cluster.worker:on("request", function(msg)
            if msg == "raise" then error("worker handler broke") end
            if msg == "slow" then timer.sleep(1000) end
            return "ok:" .. msg
          end)
          cluster.worker:on("message", function()
            local me = cluster.worker
            local r, err = me:request("slow", 100)
            me:send("w timeout " .. tostring(r) .. " " .. tostring(err))
            r, err = me:request("raise")
            me:send("w raise " .. tostring(r) .. " " .. tostring(err))
            me:request("slow", 50, function(r2, err2)
              me:send("w cb3 timeout " .. tostring(r2) .. " " .. tostring(err2))
              me:request("plain", function(r3, err3)
                me:send("w cb2 plain " .. tostring(r3) .. " " .. tostring(err3))
              end)
            end)
          end)
        end
      ]], { "-w", 1 })
      assert.equal(0, (p:wait(10000)), p:output())
      local out = p:output()
      assert.matches("m timeout nil timeout", out, 1, true)
      assert.matches("m raise nil request handler failed: [^\n]*worker handler broke", out)
      assert.matches("m cb3 raise nil request handler failed: [^\n]*worker handler broke", out)
      assert.matches("m cb2 plain ok:plain nil", out, 1, true)
      assert.matches("w timeout nil timeout", out, 1, true)
      assert.matches("w raise nil request handler failed: [^\n]*master handler broke", out)
      assert.matches("w cb3 timeout nil timeout", out, 1, true)
      assert.matches("w cb2 plain ok:plain nil", out, 1, true)
    end)

    it("fails every pending request to a worker at once when it dies, and calls back for a dead one", function()
      local p = H.start_app([[
        if cluster.is_master then
          cluster.setup({ workers = 1, restart = false })
          local core = require("luacluster.core")
          cluster.on("online", function(w)
            local t0, failed, left = core.hrtime(), {}, 50
            for i = 1, 50 do
              timer.after(0, function()
                local r, err = w:request({ i = i }, 60000)
                failed[tostring(err)] = (failed[tostring(err)] or 0) + 1
                left = left - 1
                if left == 0 then
                  for e, n in pairs(failed) do say("pending failed", n, e) end
                  say("within 5s", tostring(core.hrtime() - t0 < 5000))
                  w:request("after", function(r2, err2)
                    say("callback on dead", tostring(r2), tostring(err2))
                    local ok, err3 = w:request("after", 1000)
                    say("wait on dead", tostring(ok), tostring(err3))
                  end)
                end
              end)
            end
            timer.after(100, function() w:kill("SIGKILL") end)
          end)
        else
          cluster.worker:on("request", function() timer.sleep(100000) end)
        end
      ]], {})
      assert.equal(0, (p:wait(10000)), p:output())
      local out = p:output()
      assert.matches("pending failed 50 channel closed before the reply came", out, 1, true)
      assert.matches("within 5s true", out, 1, true)
      assert.matches("callback on dead nil worker 1 has exited", out, 1, true)
      assert.matches("wait on dead nil worker 1 has exited", out, 1, true)
    end)

    it("fails a worker's pending requests at once when the master dies", function()
      local dir = H.tmpdir()
      local p = H.start_app([[
        local core = require("luacluster.core")
        if cluster.is_master then
          cluster.on("request", function(w, msg)
            if msg == "asked" then return true end
            timer.sleep(100000)
          end)
        else
          timer.after(0, function()
            local t0 = core.hrtime()
            for i = 1, 3 do
              timer.after(0, function()
                local r, err = cluster.worker:request("hang" .. i, 60000)
                local f = io.open("]] .. dir .. [[/result" .. i, "w")
                f:write(tostring(r), " ", tostring(err), " ", tostring(core.hrtime() - t0 < 5000))
                f:close()
              end)
            end
            cluster.worker:request("asked")
            print("asked")
          end)
        end
      ]], { "-w", 1 })
      assert.truthy(p:wait_output("asked", 5000, true), p:output())
      H.sleep(100)
      p:kill("SIGKILL")
      p:wait(5000)
      for i = 1, 3 do
        local got = H.wait_for(function()
          local s = H.read_file(dir .. "/result" .. i)
          return s ~= "" and s
        end, 5000)
        assert.equal("nil channel closed before the reply came true", got)
      end
    end)

    it("drops the answer to a requester that died, and goes on", function()
      local p = H.start_app([[
        if cluster.is_master then
          cluster.setup({ workers = 1, restart = false })
          cluster.on("request", function(w, msg)
            for _ = 1, 100 do
              if w.state == "dead" then break end
              timer.sleep(50)
            end
            say("answering a dead requester", w.state)
            return "late"
          end)
          cluster.on("exit", function(w)
            timer.after(500, function() say("master still fine") cluster.stop() end)
          end)
        else
          timer.after(0, function()
            cluster.worker:request("q", 100, function() end)
            timer.after(50, function() process.exit(3) end)
          end)
        end
      ]], {})
      assert.equal(0, (p:wait(10000)), p:output())
      assert.matches("answering a dead requester dead", p:output(), 1, true)
      assert.matches("master still fine", p:output(), 1, true)
    end)
  end)

  describe("ordered start and stop", function()
    it("starts workers one at a time, each after the previous listens; stops them in reverse, each after the previous exited", function()
      local port = H.free_port()
      local p = H.start_app([[
        local core = require("luacluster.core")
        if cluster.is_master then
          cluster.setup({ workers = 3, start = "sequential" })
          for _, e in ipairs({ "fork", "online", "listening", "disconnect", "exit" }) do
            cluster.on(e, function(w) say(string.format("event %s %d %d %.1f", e, w.id, w.pid, core.hrtime())) end)
          end
          local n = 0
          cluster.on("listening", function() n = n + 1 if n == 3 then say("all listening") end end)
        else
          os.execute("sleep 0.3") -- a slow start: the next worker must wait for it
          require("luacluster.http").create_server(function() return 200, "w" .. cluster.worker.id end):listen()
          cluster.worker:on("disconnect", function() io.stdout:write("draining\n") io.stdout:flush() end)
        end
      ]], { "-p", port })
      assert.truthy(p:wait_output("all listening", 10000, true), p:output())
      -- the kernel's start times of the three workers are 0.3 s apart at least
      local ev = lines(p, "^event (%a+) (%d+) (%d+) ([%d.]+)$")
      local pids, starts = {}, {}
      for _, e in ipairs(ev) do
        if e[1] == "fork" then pids[tonumber(e[2])] = tonumber(e[3]) end
      end
      local hz = tonumber((H.sh("getconf CLK_TCK"))) or 100
      for id = 1, 3 do
        local stat = H.read_file("/proc/" .. pids[id] .. "/stat"):gsub("^.-%) ", "")
        local fields = {}
        for f in stat:gmatch("%S+") do fields[#fields + 1] = f end
        starts[id] = tonumber(fields[20]) / hz -- field 22 of the line, 20 after pid and comm
      end
      assert.is_true(starts[2] - starts[1] >= 0.25, "start times " .. starts[1] .. " " .. starts[2])
      assert.is_true(starts[3] - starts[2] >= 0.25, "start times " .. starts[2] .. " " .. starts[3])
      p:kill("SIGTERM")
      assert.equal(0, (p:wait(15000)), p:output())
      ev = lines(p, "^event (%a+) (%d+) (%d+) ([%d.]+)$")
      local seq = {}
      for _, e in ipairs(ev) do
        seq[#seq + 1] = e[1] .. e[2]
      end
      assert.equal(table.concat({
        "fork1", "online1", "listening1", "fork2", "online2", "listening2", "fork3", "online3", "listening3",
        "disconnect3", "exit3", "disconnect2", "exit2", "disconnect1", "exit1",
      }, ","), table.concat(seq, ","))
    end)

    it("counts a worker that serves nothing as ready the turn after its top level; the default starts all at once", function()
      local p = H.start_app([[
        local core = require("luacluster.core")
        if cluster.is_master then
          cluster.setup({ workers = 3, start = arg[1] })
          for _, e in ipairs({ "fork", "online", "listening" }) do
            cluster.on(e, function(w) say("event " .. e .. w.id) end)
          end
          local n = 0
          cluster.on("online", function() n = n + 1 if n == 3 then timer.after(100, function() cluster.stop() end) end end)
        else
          os.execute("sleep 0.1")
          -- odd workers listen in a 0 ms timer started at the top level, which still counts
          -- as part of the start (ready when listening); even ones serve nothing
          if cluster.worker.id % 2 == 1 then
            timer.after(0, function()
              require("luacluster.http").create_server(function() return 200, "" end):listen(0)
            end)
          end
        end
      ]], {}, { args = { "sequential" } })
      assert.equal(0, (p:wait(10000)), p:output())
      local seq = {}
      for _, e in ipairs(lines(p, "^event (%a+%d)$")) do seq[#seq + 1] = e[1] end
      assert.equal("fork1,online1,listening1,fork2,online2,fork3,online3,listening3", table.concat(seq, ","))

      local q = H.start_app([[
        if cluster.is_master then
          cluster.setup({ workers = 3 })
          for _, e in ipairs({ "fork", "online" }) do
            cluster.on(e, function(w) say("event " .. e .. w.id) end)
          end
          local n = 0
          cluster.on("online", function() n = n + 1 if n == 3 then cluster.stop() end end)
        else
          os.execute("sleep 0.1")
        end
      ]], {})
      assert.equal(0, (q:wait(10000)), q:output())
      seq = {}
      for _, e in ipairs(lines(q, "^event (%a+%d)$")) do seq[#seq + 1] = e[1] end
      assert.equal("fork1,fork2,fork3", table.concat(seq, ",", 1, 3))
    end)

    it("goes on with the next worker when one dies before it is ready", function()
      local p = H.start_app([[
        if cluster.is_master then
          -- worker 2 never says it is ready and is killed (an error at its top level would
          -- stop the first start: a failed boot)
          cluster.setup({ workers = 3, start = "sequential", ready = "manual" })
          for _, e in ipairs({ "fork", "online", "exit" }) do
            cluster.on(e, function(w) say("event " .. e .. w.id) end)
          end
          cluster.on("online", function(w) if w.id == 2 then w:kill("SIGKILL") end end)
          local n = 0
          cluster.on("online", function() n = n + 1 if n == 3 then timer.after(100, function() cluster.stop() end) end end)
        elseif cluster.worker.id ~= 2 then
          cluster.worker:ready()
        end
      ]], {})
      assert.equal(0, (p:wait(10000)), p:output())
      local seq = {}
      for _, e in ipairs(lines(p, "^event (%a+%d)$")) do seq[#seq + 1] = e[1] end
      -- (the slot it left is free: the next fork takes id 2 again)
      assert.equal("fork1,online1,fork2,online2,exit2,fork2,online2", table.concat(seq, ",", 1, 7))
    end)
  end)

  describe("pool", function()
    it("runs tasks on every worker, at most per_worker at a time, and returns results in order", function()
      local p = H.start_app([[
        local pool = require("luacluster.pool")
        if cluster.is_master then
          cluster.setup({ workers = 3 })
          local n = 0
          cluster.on("online", function()
            n = n + 1
            if n < 3 then return end
            local tasks = {}
            for i = 1, 60 do tasks[i] = { n = i, ms = (i * 7) % 11 } end
            local results, err = pool.map(tasks, { per_worker = 2 })
            local ordered, by, peak = true, {}, 0
            for i = 1, 60 do
              if results[i].n2 ~= i * 2 then ordered = false end
              by[results[i].worker] = (by[results[i].worker] or 0) + 1
              peak = math.max(peak, results[i].peak)
            end
            say("map", tostring(err), #results, results.n, tostring(ordered), tostring(by[1] and by[2] and by[3] and true), "peak " .. peak)
            -- the callback form, an empty list, least_connections
            pool.map({}, function(r, e) say("empty", #r, tostring(e)) end)
            pool.map({ 1, 2, 3 }, { scheduler = "least_connections" }, function(r, e)
              say("callback", r[1].n2, r[2].n2, r[3].n2, tostring(e))
              cluster.stop()
            end)
          end)
        else
          local running, peak = 0, 0
          pool.handle(function(task)
            if type(task) == "number" then task = { n = task, ms = 0 } end
            running = running + 1
            peak = math.max(peak, running)
            timer.sleep(task.ms)
            running = running - 1
            return { n2 = task.n * 2, worker = cluster.worker.id, peak = peak }
          end)
          cluster.worker:on("request", function() return "not for tasks" end)
          cluster.worker:on("message", function() print("tasks must not arrive as messages") end)
        end
      ]], {})
      assert.equal(0, (p:wait(15000)), p:output())
      local out = p:output()
      assert.matches("map nil 60 60 true true peak 2", out, 1, true)
      assert.matches("empty 0 nil", out, 1, true)
      assert.matches("callback 2 4 6 nil", out, 1, true)
      assert.not_matches("tasks must not arrive", out, 1, true)
    end)

    it("runs a task again elsewhere when its worker dies", function()
      local dir = H.tmpdir()
      local p = H.start_app([[
        local pool = require("luacluster.pool")
        if cluster.is_master then
          cluster.setup({ workers = 2 })
          local n = 0
          cluster.on("online", function()
            n = n + 1
            if n ~= 2 then return end
            local tasks = {}
            for i = 1, 10 do tasks[i] = i end
            local results, err = pool.map(tasks)
            local list = {}
            for i = 1, 10 do list[i] = tostring(results and results[i]) end
            say("map", tostring(err), table.concat(list, ","))
            cluster.stop()
          end)
        else
          pool.handle(function(i)
            timer.sleep(20)
            if i == 5 then
              local f = io.open("]] .. dir .. [[/died", "r")
              if not f then
                io.open("]] .. dir .. [[/died", "w"):close()
                print("dying with task 5")
                os.exit(1)
              end
              f:close()
            end
            return i * 10
          end)
        end
      ]], {})
      assert.equal(0, (p:wait(15000)), p:output())
      local out = p:output()
      assert.matches("dying with task 5", out, 1, true)
      assert.matches("map nil 10,20,30,40,50,60,70,80,90,100", out, 1, true)
      assert.matches("died while running task 5; running it again elsewhere", out, 1, true)
    end)

    it("fails with a clear error when the task's second worker dies too, and when a task raises", function()
      local p = H.start_app([[
        local pool = require("luacluster.pool")
        if cluster.is_master then
          cluster.setup({ workers = 2 })
          local done = false
          cluster.on("online", function()
            if done or #(function() local t = {} for id, w in pairs(cluster.workers) do if w.state == "online" then t[#t + 1] = id end end return t end)() < 2 then return end
            done = true
            local results, err, partial = pool.map({ 1, 2, 3, "die" })
            say("lost", tostring(results), tostring(err))
            say("partial", type(partial), partial and partial.n)
            results, err = pool.map({ 1, "raise", 3 })
            say("raised", tostring(results), tostring(err))
            results, err = pool.map({ "slow" }, { timeout = 100 })
            say("timeout", tostring(results), tostring(err))
            local ok, perr = pcall(pool.map, { 1 }, { per_worker = 0 })
            say("bad option raises", tostring(not ok))
            cluster.stop()
          end)
        else
          pool.handle(function(task)
            if task == "die" then os.exit(1) end
            if task == "raise" then error("task handler broke") end
            if task == "slow" then timer.sleep(2000) end
            return task
          end)
        end
      ]], {})
      assert.equal(0, (p:wait(20000)), p:output())
      local out = p:output()
      assert.matches("lost nil task 4 was lost: its worker died 2 times %(worker %d %(pid %d+%), worker %d %(pid %d+%)%)", out)
      assert.matches("partial table 4", out, 1, true)
      assert.matches("raised nil task 2 failed on worker %d %(pid %d+%): [^\n]*task handler broke", out)
      assert.matches("timeout nil task 1 failed on worker %d %(pid %d+%): timeout after 100 ms", out)
      assert.matches("bad option raises true", out, 1, true)
    end)

    it("fails instead of waiting when no worker is left to run a task", function()
      local p = H.start_app([[
        local pool = require("luacluster.pool")
        if cluster.is_master then
          cluster.setup({ workers = 1, restart = false })
          -- the callback form works from the top level: the map starts with the first worker
          pool.map({ "ok", "die", "ok" }, function(results, err)
            say("map", tostring(results), tostring(err))
          end)
        else
          pool.handle(function(task)
            if task == "die" then os.exit(1) end
            return task
          end)
        end
      ]], {})
      assert.equal(0, (p:wait(10000)), p:output())
      assert.matches("map nil no live worker to run task 2 on (restart = false); 1 of 3 tasks done", p:output(), 1, true)
    end)
  end)
end)
