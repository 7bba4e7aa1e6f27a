-- A helper started by app.lua with child_process.fork: it serves the sockets its parent
-- hands it and lives as long as its channel to the parent is open.
local process = require("luacluster.process")

local id = process.argv[1] or "?"
local served = 0


local function serve(sock)
  served = served + 1
  local pending = ""
  sock:on("data", function(data)
    pending = pending .. data
    for line in pending:gmatch("([^\n]*)\n") do
      sock:write(string.format("helper %s: %s\n", id, line:upper()))
    end
    pending = pending:match("[^\n]*$")
  end)
end


process.on("message", function(msg, sock)
  if type(msg) == "table" and msg.op == "serve" and sock then
    serve(sock)
    if served % 100 == 1 then
      process.send("served " .. served .. " connection(s)")
    end
  elseif sock then
    sock:close()
  end
end)
