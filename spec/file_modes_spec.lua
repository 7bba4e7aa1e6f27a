-- The modes of the files the runtime makes: the control socket is 0600 from the moment it can
-- be connected to, and nothing changes the process-wide umask to get there (that raced the
-- access log's reopen, which creates its file in a thread of libuv's pool).
local H = require("helper")

describe("file modes", function()
  after_each(function()
    H.cleanup()
  end)

  it("binding control sockets never changes the mode of an access log created meanwhile", function()
    local dir = H.tmpdir()
    local p = H.start_app(([[
      local core = require("luacluster.core")
      cluster.setup{ workers = 0 }
      local dir = %q
      local log = assert(core.access_log_open(dir .. "/access.log"))
      local m0 = core.file_mode(dir .. "/access.log")
      timer.after(0, function()
        local bad = 0
        for _ = 1, 300 do
          core.unlink(dir .. "/access.log")
          log:reopen()                      -- the pool thread creates the file again, now
          for k = 1, 40 do                  -- while this thread binds sockets
            local path = dir .. "/s" .. k .. ".sock"
            local srv = core.pipe_listen(path, function() end)
            if srv then
              local mode = core.file_mode(path)
              if mode ~= 384 then bad = bad + 1000 end   -- 0600 once listening
              srv:close()
            end
            core.unlink(path)
          end
          local mode, t0 = nil, core.now()
          repeat                            -- the reopen is done in the pool thread
            timer.sleep(2)
            mode = core.file_mode(dir .. "/access.log")
          until mode or core.now() - t0 > 2000
          if mode ~= m0 then bad = bad + 1 end
        end
        say("bad", bad)
        cluster.stop()
      end)
    ]]):format(dir))
    assert.equal(0, (p:wait(20000)), p:output())
    assert.equal("bad 0", p:stdout():match("bad %d+"), p:output())
  end)

  it("makes the control socket 0600 whatever the umask", function()
    local dir = H.tmpdir()
    H.sh("chmod 755 " .. dir)
    local src = dir .. "/app.lua"
    H.write_file(src, H.prelude .. "cluster.setup{ workers = 0 }\ntimer.after(3000, function() cluster.stop() end)\n")
    local p = H.spawn({ "/bin/sh", "-c", "umask 000; exec '" .. H.bin .. "' --control " .. dir .. "/c.sock " .. src }, { dir = dir })
    local mode = H.wait_for(function()
      local out = H.sh("stat -c %a " .. dir .. "/c.sock 2>/dev/null")
      return out:match("^%d+")
    end, 5000)
    assert.equal("600", mode)
    p:stop()
  end)
end)
