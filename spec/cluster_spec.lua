-- Integration specs of the cluster API: the real binary, real worker processes, real pipes.
-- Apps print what they see on stdout; the spec reads the master's output files.
local H = require("helper")

local function lines_matching(p, pattern)
  local list = {}
  for line in p:output():gmatch("[^\n]+") do
    local m = { line:match(pattern) }
    if #m > 0 then
      list[#list + 1] = m
    end
  end
  return list
end


describe("cluster", function()
  after_each(function()
    H.cleanup()
  end)

  it("sets is_master / is_worker and gives workers ids 1..N with -w", function()
    local p = H.start_app([[
      if cluster.is_master then
        say("master", tostring(cluster.is_master), tostring(cluster.is_worker), type(cluster.cpu_count()))
        local n = 0
        cluster.on("online", function(w)
          n = n + 1
          if n == 3 then
            local ids = {}
            for id in pairs(cluster.workers) do ids[#ids + 1] = id end
            table.sort(ids)
            say("ids", table.concat(ids, ","))
            cluster.stop()
          end
        end)
      else
        say("worker", cluster.worker.id, tostring(cluster.is_master), tostring(cluster.is_worker),
          tostring(cluster.worker.pid == process.pid), "generation " .. cluster.worker.generation)
      end
    ]], { "-w", 3 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("\nids 1,2,3\n", "\n" .. out)
    assert.matches("master true false number", out, 1, true)
    for id = 1, 3 do
      assert.matches("[worker " .. id .. "] worker " .. id .. " false true true generation 1", out, 1, true)
    end
  end)

  it("starts setup{workers=} workers, over -w", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 2 })
        local n = 0
        cluster.on("online", function() n = n + 1 if n == 2 then timer.after(200, function() cluster.stop() end) end end)
      else
        say("up", cluster.worker.id)
      end
    ]], { "-w", 5 })
    assert.equal(0, (p:wait(10000)))
    assert.equal(2, p:count("%] up %d"))
    assert.equal(0, p:count("[worker 3]", true))
  end)

  it("prefixes a worker's stdout and stderr lines with [worker N]", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("exit", function() cluster.stop() end)
      else
        io.stdout:write("to stdout\n") io.stdout:flush()
        io.stderr:write("to stderr\nsecond line\n")
        print("printed")
        process.exit(0)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    assert.matches("[worker 1] to stdout\n", p:stdout(), 1, true)
    assert.matches("[worker 1] printed\n", p:stdout(), 1, true)
    assert.matches("[worker 1] to stderr\n[worker 1] second line\n", p:stderr(), 1, true)
  end)

  it("carries messages master -> worker and worker -> master", function()
    local p = H.start_app([[
      if cluster.is_master then
        local got = 0
        cluster.on("online", function(w)
          assert(w:send({ hello = w.id, blob = "a\0b", list = { 1, 2, 3 } }))
        end)
        cluster.on("message", function(w, msg)
          say("master got", w.id, msg.echo.hello, #msg.echo.blob, #msg.echo.list, tostring(msg.from_is_nil))
          got = got + 1
          if got == 2 then cluster.stop() end
        end)
      else
        cluster.worker:on("message", function(msg, handle, from)
          assert(cluster.worker:send({ echo = msg, from_is_nil = from == nil }))
        end)
      end
    ]], { "-w", 2 })
    assert.equal(0, (p:wait(10000)))
    assert.matches("master got 1 1 3 3 true", p:output(), 1, true)
    assert.matches("master got 2 2 3 3 true", p:output(), 1, true)
  end)

  it("passes the same worker object to cluster.on and worker:on handlers", function()
    local p = H.start_app([[
      if cluster.is_master then
        local seen = {}
        cluster.on("fork", function(w) seen[w.id] = w end)
        cluster.on("message", function(w, msg)
          say("same", tostring(seen[w.id] == w), tostring(cluster.workers[w.id] == w))
          cluster.stop()
        end)
        local w = cluster.fork()
        w:on("message", function(msg) say("per-worker", msg) end)
      else
        cluster.worker:send("hi")
      end
    ]], {})
    assert.equal(0, (p:wait(10000)))
    assert.matches("same true true", p:output(), 1, true)
    assert.matches("per-worker hi", p:output(), 1, true)
  end)

  it("broadcasts from the master to every worker", function()
    local p = H.start_app([[
      if cluster.is_master then
        local n, got = 0, 0
        cluster.on("online", function()
          n = n + 1
          if n == 3 then assert(cluster.broadcast({ news = "all" })) end
        end)
        cluster.on("message", function(w, msg)
          got = got + 1
          say("ack", w.id, msg)
          if got == 3 then cluster.stop() end
        end)
      else
        cluster.worker:on("message", function(msg) cluster.worker:send(msg.news) end)
      end
    ]], { "-w", 3 })
    assert.equal(0, (p:wait(10000)))
    for id = 1, 3 do
      assert.matches("ack " .. id .. " all", p:output(), 1, true)
    end
  end)

  it("routes worker -> worker with send_to and broadcast, telling who sent", function()
    local p = H.start_app([[
      if cluster.is_master then
        local n = 0
        cluster.on("online", function()
          n = n + 1
          if n == 3 then cluster.workers[1]:send("go") end
        end)
        local got = 0
        cluster.on("message", function(w, msg)
          say(msg)
          got = got + 1
          if got == 3 then cluster.stop() end
        end)
      else
        local me = cluster.worker
        me:on("message", function(msg, handle, from)
          if msg == "go" then
            assert(me:send_to(3, "direct"))
            assert(me:broadcast("to all"))
          else
            me:send(string.format("worker %d got %s from %s", me.id, msg, tostring(from)))
          end
        end)
      end
    ]], { "-w", 3 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("worker 3 got direct from 1", out, 1, true)
    assert.matches("worker 2 got to all from 1", out, 1, true)
    assert.matches("worker 3 got to all from 1", out, 1, true)
    assert.not_matches("worker 1 got to all", out, 1, true)
  end)

  it("keeps the order of 10,000 messages each way", function()
    local p = H.start_app([[
      local N = 10000
      if cluster.is_master then
        local expect, worker_done = 1, false
        cluster.on("online", function(w)
          for i = 1, N do assert(w:send({ seq = i, pad = string.rep("x", i % 50) })) end
        end)
        cluster.on("message", function(w, msg)
          if msg == "worker done" then
            say("worker got all")
            worker_done = true
          else
            if msg.seq ~= expect then say("master out of order", msg.seq, expect) end
            expect = expect + 1
            if msg.seq == N then say("master got all", expect - 1) end
          end
          if expect > N and worker_done then cluster.stop() end
        end)
      else
        local expect = 1
        cluster.worker:on("message", function(msg)
          if msg.seq ~= expect then print("worker out of order", msg.seq, expect) end
          expect = expect + 1
          if msg.seq == N then cluster.worker:send("worker done") end
        end)
        for i = 1, N do assert(cluster.worker:send({ seq = i })) end
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(20000)))
    local out = p:output()
    assert.matches("master got all 10000", out, 1, true)
    assert.matches("worker got all", out, 1, true)
    assert.not_matches("out of order", out, 1, true)
  end)

  it("carries a 10 MB message each way", function()
    local p = H.start_app([[
      local function blob(n)
        local t = {}
        for i = 0, 255 do t[#t + 1] = string.char(i) end
        return string.rep(table.concat(t), n / 256)
      end
      local BIG = blob(10 * 1024 * 1024)
      if cluster.is_master then
        cluster.on("online", function(w) assert(w:send({ data = BIG })) end)
        cluster.on("message", function(w, msg)
          say("master got", #msg.data, tostring(msg.data == BIG), msg.ok)
          cluster.stop()
        end)
      else
        cluster.worker:on("message", function(msg)
          assert(cluster.worker:send({ data = msg.data, ok = tostring(msg.data == BIG) }))
        end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(15000)))
    assert.matches("master got 10485760 true true", p:output(), 1, true)
  end)

  it("delivers messages sent before the worker is online, after its top level ran", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("fork", function(w) assert(w:send("early")) end)
        cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
      else
        cluster.worker:on("message", function(msg) cluster.worker:send("worker got " .. msg) end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    assert.matches("worker got early", p:output(), 1, true)
  end)

  it("fails a pending request when the worker dies before replying", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 1, restart = false })
        cluster.on("online", function(w)
          local r, err = w:request("die", 5000)
          say("request", tostring(r), tostring(err))
        end)
      else
        cluster.worker:on("request", function() os.exit(1) end)
      end
    ]], {})
    assert.equal(0, (p:wait(10000)))
    assert.matches("request nil channel closed before the reply came", p:output(), 1, true)
  end)

  it("keeps the order of worker -> worker messages", function()
    local p = H.start_app([[
      local N = 3000
      if cluster.is_master then
        local n = 0
        cluster.on("online", function() n = n + 1 if n == 2 then cluster.workers[1]:send("go") end end)
        cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
      else
        local me, expect = cluster.worker, 1
        me:on("message", function(msg, handle, from)
          if msg == "go" then
            for i = 1, N do assert(me:send_to(2, i)) end
          elseif from == 1 then
            if msg ~= expect then me:send("out of order " .. msg .. " " .. expect) end
            expect = expect + 1
            if msg == N then me:send("worker 2 got " .. N .. " in order") end
          end
        end)
      end
    ]], { "-w", 2 })
    assert.equal(0, (p:wait(10000)))
    assert.matches("worker 2 got 3000 in order", p:output(), 1, true)
    assert.not_matches("out of order", p:output(), 1, true)
  end)

  it("refuses a function (nil, err) and sends nothing", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("online", function(w)
          local ok, err = w:send({ f = print })
          say("send", tostring(ok), err)
          ok, err = cluster.broadcast(function() end)
          say("broadcast", tostring(ok), err)
          local t = {} t.t = t
          ok, err = w:send(t)
          say("cycle", tostring(ok), err)
          assert(w:send("after"))
        end)
        cluster.on("message", function(w, msg) say("master got", msg) end)
        cluster.on("message", function(w, msg) if msg:match("^refused") then cluster.stop() end end)
      else
        local first
        cluster.worker:on("message", function(msg)
          if first == nil then
            first = msg
            cluster.worker:send("first: " .. tostring(msg))
            local ok, err = cluster.worker:send(coroutine.create(print))
            cluster.worker:send("refused " .. tostring(ok) .. " " .. tostring(err))
          end
        end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("send nil cannot send a value of type function", out, 1, true)
    assert.matches("broadcast nil cannot send a value of type function", out, 1, true)
    assert.matches("cycle nil cannot send a table that contains itself", out, 1, true)
    assert.matches("master got first: after", out, 1, true)
    assert.matches("master got refused nil cannot send a value of type thread", out, 1, true)
  end)

  it("carries nil as a message", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("online", function(w) assert(w:send(nil)) end)
        cluster.on("message", function(w, msg, handle)
          say("master got", type(msg))
          cluster.stop()
        end)
      else
        cluster.worker:on("message", function(msg)
          if msg == nil then assert(cluster.worker:send(nil)) else cluster.worker:send("not nil") end
        end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    assert.matches("master got nil", p:output(), 1, true)
  end)

  it("returns nil, err for a message to a worker that has exited", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 1, restart = false })
        cluster.on("exit", function(w, code)
          local ok, err = w:send("too late")
          say("send after exit", tostring(ok), tostring(err), w.state)
          local r, rerr = w:request("too late")
          say("request after exit", tostring(r), tostring(rerr))
        end)
      else
        process.exit(0)
      end
    ]], {})
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("send after exit nil worker 1 has exited dead", out, 1, true)
    assert.matches("request after exit nil worker 1 has exited", out, 1, true)
  end)

  it("returns nil, err for send_to a worker that does not exist", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("message", function(w, msg) say("master got", msg) cluster.stop() end)
      else
        cluster.worker:on("error", function(err)
          cluster.worker:send("error event: " .. err)
        end)
        cluster.worker:send_to(7, "nobody")
        local ok, err = pcall(cluster.worker.send_to, cluster.worker, 0, "x")
        print("bad id raises " .. tostring(not ok))
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    assert.matches("master got error event: send_to: there is no live worker 7", p:output(), 1, true)
    assert.matches("bad id raises true", p:output(), 1, true)
  end)

  it("answers requests both ways", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("request", function(w, msg)
          return { doubled = msg.n * 2, from = w.id }
        end)
        cluster.on("online", function(w)
          local reply, err = w:request({ q = "your id?" }, 2000)
          say("master request", reply and reply.id, tostring(err))
        end)
        cluster.on("message", function(w, msg)
          say("worker said", msg)
          cluster.stop()
        end)
      else
        cluster.worker:on("request", function(msg)
          return { id = cluster.worker.id, q = msg.q }
        end)
        timer.after(0, function()
          local reply, err = cluster.worker:request({ n = 21 })
          cluster.worker:send(string.format("%s %s %s", tostring(reply and reply.doubled),
            tostring(reply and reply.from), tostring(err)))
        end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("master request 1 nil", out, 1, true)
    assert.matches("worker said 42 1 nil", out, 1, true)
  end)

  it("reports a request without a handler, a failing handler and a timeout as nil, err", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("request", function(w, msg)
          if msg == "fail" then error("master handler broke") end
          if msg == "slow" then timer.sleep(2000) return "late" end
          return "ok"
        end)
        cluster.on("online", function(w)
          local r, err = w:request("anything", 2000)
          say("no handler", tostring(r), tostring(err))
        end)
        cluster.on("message", function(w, msg) say(msg) if msg:match("^slow") then cluster.stop() end end)
      else
        timer.after(0, function()
          local r, err = cluster.worker:request("fail")
          cluster.worker:send("fail " .. tostring(r) .. " " .. tostring(err))
          r, err = cluster.worker:request("slow", 100)
          cluster.worker:send("slow " .. tostring(r) .. " " .. tostring(err))
        end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("no handler nil [^\n]*no cluster.worker:on%(\"request\"%) handler", out)
    assert.matches("fail nil request handler failed: [^\n]*master handler broke", out)
    assert.matches("slow nil timeout", out, 1, true)
  end)

  it("raises when a request would wait at a script's top level", function()
    local p = H.start_app([[
      if cluster.is_worker then
        local ok, err = pcall(cluster.worker.request, cluster.worker, "x")
        print("top level " .. tostring(ok) .. " " .. err)
        process.exit(0)
      else
        cluster.setup({ workers = 1, restart = false })
      end
    ]], {})
    assert.equal(0, (p:wait(10000)))
    assert.matches("top level false [^\n]*waits, so it can only be called inside a handler", p:output())
  end)

  it("refuses a message over max_message_size at send with nil, err", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 1, max_message_size = 4096 })
        cluster.on("online", function(w)
          local ok, err = w:send(string.rep("x", 10000))
          say("master big", tostring(ok), tostring(err))
          ok, err = cluster.broadcast(string.rep("x", 10000))
          say("master broadcast big", tostring(ok), tostring(err))
          assert(w:send("small"))
        end)
        cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
      else
        cluster.worker:on("message", function(msg)
          local ok, err = cluster.worker:send(string.rep("y", 10000))
          cluster.worker:send("worker got " .. msg .. "; big: " .. tostring(ok) .. " " .. tostring(err))
        end)
      end
    ]], {})
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("master big nil [^\n]*over the limit of 4096", out)
    assert.matches("master broadcast big nil [^\n]*over the limit of 4096", out)
    assert.matches("worker got small; big: nil [^\n]*over the limit of 4096", out)
  end)

  it("fires fork, online, disconnect, exit in order with the same worker object", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 0 })
        local log, first = {}, nil
        local function note(event)
          cluster.on(event, function(w, ...)
            first = first or w
            log[#log + 1] = event .. (w == first and "" or "(other object)") .. ":" .. w.state
            if event == "online" then w:disconnect() end
            if event == "exit" then
              say("events", table.concat(log, ","))
              say("exit args", tostring((...)), tostring(select(2, ...)), w.state, tostring(w.exited_after_disconnect))
            end
          end)
        end
        for _, e in ipairs({ "fork", "online", "disconnect", "exit" }) do note(e) end
        local w = cluster.fork()
        local wl = {}
        for _, e in ipairs({ "fork", "online", "disconnect", "exit" }) do
          w:on(e, function() wl[#wl + 1] = e if e == "exit" then say("worker events", table.concat(wl, ",")) end end)
        end
      end
    ]], {})
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("events fork:starting,online:online,disconnect:draining,exit:dead\n", out, 1, true)
    -- the worker's own "fork" fired before its handlers could be added
    assert.matches("worker events online,disconnect,exit\n", out, 1, true)
    assert.matches("exit args 0 nil dead true", out, 1, true)
  end)

  it("runs the master alone with workers = 0 and exits 0 when done", function()
    local p = H.start_app([[
      if cluster.is_worker then print("a worker started") else cluster.setup({ workers = 0 }) end
      timer.after(50, function() say("master done", tostring(next(cluster.workers))) end)
    ]], { "-w", 2 })
    assert.equal(0, (p:wait(5000)))
    assert.matches("master done nil", p:output(), 1, true)
    assert.not_matches("a worker started", p:output(), 1, true)
  end)

  it("forks with an env merged into the master's environment", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 0 })
        local w = cluster.fork({ LC_SPEC_EXTRA = "extra", LC_SPEC_NUM = 7 })
        local w2 = cluster.fork()
        local got = 0
        cluster.on("message", function(w, msg) say(msg) got = got + 1 if got == 2 then cluster.stop() end end)
      else
        cluster.worker:send(string.format("worker %d extra=%s num=%s base=%s role_hidden=%s", cluster.worker.id,
          tostring(os.getenv("LC_SPEC_EXTRA")), tostring(os.getenv("LC_SPEC_NUM")),
          tostring(os.getenv("LC_SPEC_BASE")), tostring(os.getenv("LUACLUSTER_ROLE") == nil)))
      end
    ]], {}, { env = { LC_SPEC_BASE = "base" } })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("worker 1 extra=extra num=7 base=base role_hidden=true", out, 1, true)
    assert.matches("worker 2 extra=nil num=nil base=base role_hidden=true", out, 1, true)
  end)

  it("raises for master-only functions in a worker", function()
    local p = H.start_app([[
      if cluster.is_worker then
        for _, name in ipairs({ "fork", "setup", "broadcast", "stop", "on" }) do
          local ok, err = pcall(cluster[name], {})
          print(name .. " " .. tostring(ok) .. " " .. err)
        end
        process.exit(0)
      else
        cluster.setup({ workers = 1, restart = false })
      end
    ]], {})
    assert.equal(0, (p:wait(10000)))
    for _, name in ipairs({ "fork", "setup", "broadcast", "stop" }) do
      assert.matches(name .. " false [^\n]*cluster." .. name .. " is only available in the master", p:output())
    end
    assert.matches("on false [^\n]*cluster.on is only available in the master", p:output())
  end)

  it("reports a frame that fails to decode as an error event, and goes on", function()
    local p = H.start_app([[
      local core = require("luacluster.core")
      if cluster.is_master then
        cluster.on("error", function(err) say("master error event:", err) end)
        cluster.on("message", function(w, msg) say("master got", msg) cluster.stop() end)
      else
        -- a garbled user message, written under the codec (not something a script can do)
        local ch = require("luacluster.worker.side").channel()
        ch.handle:send(core.kind.MSG, 0, 0, "\255garbage")
        cluster.worker:send("still here")
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("master error event: worker 1: cannot decode message", out, 1, true)
    assert.matches("master got still here", out, 1, true)
  end)

  it("runs the master alone with -w 0", function()
    local p = H.start_app([[
      if cluster.is_worker then print("a worker started") end
      timer.after(20, function() say("alone") end)
    ]], { "-w", 0 })
    assert.equal(0, (p:wait(5000)))
    assert.matches("alone", p:output(), 1, true)
    assert.not_matches("a worker started", p:output(), 1, true)
  end)

  it("delivers later messages after a message handler raises", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("online", function(w) w:send(1) w:send(2) end)
        cluster.on("message", function(w, msg)
          if msg == "boom" then error("master handler failed on purpose") end
          say("master got", msg)
          cluster.stop()
        end)
      else
        cluster.worker:on("message", function(msg)
          if msg == 1 then error("worker handler failed on purpose") end
          cluster.worker:send("boom")
          cluster.worker:send("got " .. msg)
        end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    assert.matches("%[worker 1%] [^\n]*worker handler failed on purpose", out)
    assert.matches("[worker 1] stack traceback:", out, 1, true)
    assert.matches("master handler failed on purpose", out, 1, true)
    assert.matches("master got got 2", out, 1, true)
  end)
end)
