-- During a reload, a new worker is not yet routed (it takes its slot at the switch), but what
-- it sends to other workers before the switch is not lost: its broadcast reaches every
-- worker of the serving generation and the draining ones of older generations, its send_to
-- reaches the slot's serving worker, as messages between workers do at any other time.
local H = require("helper")

local APP = H.prelude .. [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ workers = 2 }
else
  local me = cluster.worker
  me:on("message", function(msg, handle, from)
    say("got", msg, "at", me.generation .. "/" .. me.id, "from", tostring(from))
  end)
  me:on("error", function(err) say("error at", me.generation .. "/" .. me.id, err) end)
  http.create_server(function(req)
    if req.path == "/hang" then
      say("hang at", me.generation .. "/" .. me.id)
      timer.sleep(tonumber(req.query))
    end
    return 200, "g" .. me.generation .. " " .. me.id
  end):listen()
  if me.generation > 1 then -- at the top level: before the reload switches to this generation
    assert(me:broadcast("b" .. me.generation .. "-" .. me.id))
    assert(me:send_to(2, "r" .. me.generation .. "-" .. me.id))
  end
end
]]


describe("reload messages", function()
  after_each(function()
    H.cleanup()
  end)

  it("a new worker's broadcast and send_to before the switch reach the live workers", function()
    local port = H.free_port()
    local dir = H.tmpdir()
    local path, ctl = dir .. "/app.lua", dir .. "/ctl.sock"
    H.write_file(path, APP)
    local p = H.start(path, { "-p", port, "--control", ctl })
    local url = "http://127.0.0.1:" .. port
    assert(H.wait_for(function() return (H.curl(url .. "/")):match("^g1 ") end, 8000, 50), p:output())
    -- generation 1 keeps draining past the next reloads: each worker has a long request (the
    -- scheduler may give two in a row to one worker: more until both have one)
    local hangs = {}
    for _ = 1, 20 do
      local s = assert(H.connect(port))
      s:send("GET /hang?6000 HTTP/1.1\r\nHost: t\r\n\r\n")
      hangs[#hangs + 1] = s
      H.sleep(100)
      local out = p:output()
      if out:find("hang at 1/1", 1, true) and out:find("hang at 1/2", 1, true) then break end
    end
    assert(p:output():find("hang at 1/1", 1, true) and p:output():find("hang at 1/2", 1, true), p:output())
    local out, rc = H.sh(H.bin .. " reload --control " .. ctl)
    assert.equal(0, rc, out .. p:output())
    -- generation 2's top level ran before the switch: generation 1 (serving then) got all
    for _, line in ipairs({
      "got b2-1 at 1/1 from 1", "got b2-1 at 1/2 from 1", "got b2-2 at 1/1 from 2", "got b2-2 at 1/2 from 2",
      "got r2-1 at 1/2 from 1", "got r2-2 at 1/2 from 2",
    }) do
      assert.truthy(p:wait_output(line, 3000, true), line .. " is missing:\n" .. p:output())
    end
    out, rc = H.sh(H.bin .. " reload --control " .. ctl)
    assert.equal(0, rc, out .. p:output())
    -- generation 3's: generation 2 (serving) and generation 1 (draining) got them
    for _, line in ipairs({
      "got b3-1 at 2/1 from 1", "got b3-1 at 2/2 from 1", "got b3-2 at 2/1 from 2", "got b3-2 at 2/2 from 2",
      "got b3-1 at 1/1 from 1", "got b3-1 at 1/2 from 1",
      "got b3-2 at 1/1 from 2", "got b3-2 at 1/2 from 2", "got r3-1 at 2/2 from 1", "got r3-2 at 2/2 from 2",
    }) do
      assert.truthy(p:wait_output(line, 3000, true), line .. " is missing:\n" .. p:output())
    end
    assert.is_nil(p:output():find("unexpected frame kind", 1, true), p:output())
    assert.is_nil(p:output():find("error at", 1, true), p:output())
    for _, s in ipairs(hangs) do
      s:close()
    end
    p:stop()
  end)
end)
