-- luacluster.ngx against the real thing: Debian's nginx with libnginx-mod-http-lua (and the
-- lua-resty-core it loads) runs spec/ngx_cases.lua in a content_by_lua handler on a free
-- loopback port; the same cases run in-process on luacluster.ngx; every line must be equal.
-- What differs on purpose (Debian's module is on PCRE1, luacluster's ngx.re on PCRE2, as
-- OpenResty 1.25's) stays out of the cases: spec/ngx_pure_spec.lua asserts it.
local H = require("helper")
local cases = require("ngx_cases")

local NGINX = "/usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"


local function readable(path)
  local f = io.open(path)
  if f then
    f:close()
    return true
  end
  return false
end


local function start_nginx()
  local dir = H.tmpdir()
  H.sh("chmod 755 " .. dir) -- nginx's workers may run as another user
  H.write_file(dir .. "/ngx_cases.lua", H.read_file(H.root .. "/spec/ngx_cases.lua"))
  local port = H.free_port()
  H.write_file(dir .. "/nginx.conf", table.concat({
    "load_module " .. MODULES .. "/ndk_http_module.so;",
    "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
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
    "    server {",
    "        listen 127.0.0.1:" .. port .. ";",
    "        location = /cases {",
    "            default_type text/plain;",
    "            content_by_lua_block {",
    "                for _, line in ipairs(require('ngx_cases').run(ngx)) do ngx.say(line) end",
    "            }",
    "        }",
    "    }",
    "}",
    "",
  }, "\n"))
  local p = H.spawn({ NGINX, "-p", dir, "-c", dir .. "/nginx.conf", "-e", dir .. "/error.log" }, { dir = dir })
  local up = H.wait_for(function()
    local s = H.connect(port)
    if s then
      s:close()
      return true
    end
  end, 5000)
  assert(up, "nginx did not start: " .. p:output() .. H.read_file(dir .. "/error.log"))
  return p, port, dir
end


local function lines(s)
  local t = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    t[#t + 1] = line
  end
  if t[#t] == "" then
    t[#t] = nil
  end
  return t
end


describe("luacluster.ngx against Debian's nginx + lua-nginx-module", function()
  local have = readable(NGINX) and readable(MODULES .. "/ngx_http_lua_module.so")
  local nginx, port, dir

  setup(function()
    if have then
      nginx, port, dir = start_nginx()
    end
  end)

  teardown(function()
    if nginx then
      nginx:stop()
    end
    H.cleanup()
  end)

  it("answers every case of spec/ngx_cases.lua as OpenResty does", function()
    assert(have, "this spec needs nginx and libnginx-mod-http-lua (vendor/install-deps.sh)")
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/cases")
    assert.equal(200, status, body .. H.read_file(dir .. "/error.log"))
    local theirs = lines(body)
    local ours = cases.run(require("luacluster.ngx"))
    local diff = {}
    for i = 1, math.max(#theirs, #ours) do
      if theirs[i] ~= ours[i] then
        diff[#diff + 1] = "nginx:      " .. tostring(theirs[i]) .. "\nluacluster: " .. tostring(ours[i])
      end
    end
    assert.equal("", table.concat(diff, "\n"))
    assert.is_true(#ours > 100)
  end)
end)
