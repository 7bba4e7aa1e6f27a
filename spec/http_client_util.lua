-- Upstreams for the HTTP client's specs (http_client_spec, examples_proxy_spec): Debian's nginx
-- with its own prefix, config and pid file in a temp folder on a free loopback port (with
-- lua-nginx-module for chunked and slow answers), and the scripted raw server
-- spec/http_client_raw.py. Each start returns { proc =, port = }; stop them with :stop().
local H = require("helper")

local U = {}

U.NGINX = "/usr/sbin/nginx"
U.LUA_MODULES = { "/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so" }

function U.have_nginx()
  for _, f in ipairs({ U.NGINX, U.LUA_MODULES[1], U.LUA_MODULES[2] }) do
    if not io.open(f) then
      return false
    end
  end
  return true
end

local NGINX_CONF = [[
load_module %s;
load_module %s;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/tmp;
  proxy_temp_path %s/tmp;
  fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp;
  scgi_temp_path %s/tmp;
  default_type text/plain;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:%d;
    location / { return 404 "nothing here"; }
    location = /cl { return 200 "hello"; }
    location = /conn { return 200 "$connection"; }
    location = /moved { add_header X-Upstream yes; return 302 http://example.test/cl; }
    location = /204 { return 204; }
    location = /304 { return 304; }
    location = /chunked {
      content_by_lua_block { ngx.print("one,") ngx.flush(true) ngx.print("two,") ngx.flush(true) ngx.print("three") }
    }
    location = /big {
      content_by_lua_block { ngx.header["Content-Length"] = 2000 ngx.print(string.rep("x", 2000)) }
    }
    location = /bigchunked {
      content_by_lua_block { for i = 1, 4 do ngx.print(string.rep("y", 500)) ngx.flush(true) end }
    }
    location = /slow { content_by_lua_block { ngx.sleep(0.3) ngx.print("slow") } }
    location = /echo {
      content_by_lua_block {
        ngx.req.read_body()
        ngx.print(ngx.req.get_method(), " ", ngx.var.http_x_test or "-", " ", ngx.req.get_body_data() or "")
      }
    }
  }
%s
}
]]

local up_mt = {}
up_mt.__index = up_mt

function up_mt:stop()
  if self.proc then
    self.proc:stop(3000)
    self.proc = nil
  end
end


-- nginx on a free port, answering once it accepts connections; extra: more of the http block
-- (another server: net_tls_spec's HTTPS one)
function U.nginx(extra)
  local dir = H.tmpdir()
  H.sh("mkdir -p " .. dir .. "/tmp")
  local port = H.free_port()
  H.write_file(dir .. "/nginx.conf", string.format(NGINX_CONF, U.LUA_MODULES[1], U.LUA_MODULES[2], dir, dir, dir, dir,
    dir, dir, dir, port, extra or ""))
  local proc = H.spawn({ U.NGINX, "-p", dir, "-c", dir .. "/nginx.conf", "-e", dir .. "/error.log", "-g", "daemon off;" },
    { dir = dir })
  local up = H.wait_listening(port, 10000)
  assert(up, "nginx did not start: " .. proc:output() .. H.read_file(dir .. "/error.log"))
  return setmetatable({ proc = proc, port = port, dir = dir }, up_mt)
end


-- spec/http_client_raw.py on a free port
function U.raw()
  local port = H.free_port()
  local proc = H.spawn({ "/usr/bin/python3", H.root .. "/spec/http_client_raw.py", tostring(port) })
  assert(proc:wait_output("ready", 10000, true), "the raw server did not start: " .. proc:output())
  return setmetatable({ proc = proc, port = port }, up_mt)
end

return U
