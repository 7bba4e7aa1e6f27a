-- Shared by the specs that hold luacluster.ngx against the real thing: Debian's nginx with
-- libnginx-mod-http-lua (and the lua-resty-core it loads), one worker on a free loopback port,
-- serving one location whose content_by_lua block the spec gives, with the spec files it names
-- on its lua_package_path.
local H = require("helper")

local M = {}

M.NGINX = "/usr/sbin/nginx"
M.MODULES = "/usr/lib/nginx/modules"


local function readable(path)
  local f = io.open(path)
  if f then
    f:close()
    return true
  end
  return false
end


-- nginx and its Lua module are installed
function M.available()
  return readable(M.NGINX) and readable(M.MODULES .. "/ngx_http_lua_module.so")
end


-- start(files, location, lua [, http_lines]) -> process, port, dir: nginx serving `location`
-- with the Lua code `lua` (content_by_lua_block), the spec/ files in the list `files` beside
-- it, and http_lines (directives such as "lua_shared_dict cases 1m;") in its http block
function M.start(files, location, lua, http_lines)
  local dir = H.tmpdir()
  H.sh("chmod 755 " .. dir) -- nginx's workers may run as another user
  for _, name in ipairs(files) do
    H.write_file(dir .. "/" .. name, H.read_file(H.root .. "/spec/" .. name))
  end
  local port = H.free_port()
  H.write_file(dir .. "/nginx.conf", table.concat({
    "load_module " .. M.MODULES .. "/ndk_http_module.so;",
    "load_module " .. M.MODULES .. "/ngx_http_lua_module.so;",
    "daemon off;",
    "worker_processes 1;",
    "pid " .. dir .. "/nginx.pid;",
    -- every level passes nginx's threshold, as in luacluster: ngx.log checks all its arguments
    "error_log " .. dir .. "/error.log debug;",
    "events { worker_connections 64; }",
    "http {",
    "    access_log off;",
    "    client_body_temp_path " .. dir .. "/client_body_temp;",
    "    proxy_temp_path " .. dir .. "/proxy_temp;",
    "    fastcgi_temp_path " .. dir .. "/fastcgi_temp;",
    "    uwsgi_temp_path " .. dir .. "/uwsgi_temp;",
    "    scgi_temp_path " .. dir .. "/scgi_temp;",
    "    lua_package_path '" .. dir .. "/?.lua;;';",
    "    " .. table.concat(http_lines or {}, "\n    "),
    "    server {",
    "        listen 127.0.0.1:" .. port .. ";",
    "        location = " .. location .. " {",
    "            default_type text/plain;",
    "            content_by_lua_block {",
    "                " .. lua,
    "            }",
    "        }",
    "    }",
    "}",
    "",
  }, "\n"))
  local p = H.spawn({ M.NGINX, "-p", dir, "-c", dir .. "/nginx.conf", "-e", dir .. "/error.log" }, { dir = dir })
  local up = H.wait_listening(port, 5000)
  assert(up, "nginx did not start: " .. p:output() .. H.read_file(dir .. "/error.log"))
  return p, port, dir
end


-- the lines of s, without a last empty one
function M.lines(s)
  local t = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    t[#t + 1] = line
  end
  if t[#t] == "" then
    t[#t] = nil
  end
  return t
end


-- "" when the two lists of lines are equal, else each differing pair
function M.diff(theirs, ours)
  local out = {}
  for i = 1, math.max(#theirs, #ours) do
    if theirs[i] ~= ours[i] then
      out[#out + 1] = "nginx:      " .. tostring(theirs[i]) .. "\nluacluster: " .. tostring(ours[i])
    end
  end
  return table.concat(out, "\n")
end


return M
