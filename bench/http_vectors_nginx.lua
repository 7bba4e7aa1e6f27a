-- Runs the request vectors of spec/data/http_vectors.lua against a real nginx (Debian's, started
-- here with its own temporary prefix, config and pid file on a free 127.0.0.1 port, answering
-- `return 200 "ok"`) and, beside it, against luacluster (build/luacluster); prints a markdown
-- table of every vector where nginx does something other than the table expects.
-- `return` answers without reading a request body, so when Debian's lua module is installed a
-- second nginx server on another port reads the whole body first (ngx.req.read_body()), which
-- shows what nginx's own body parser does with the chunked vectors: column "nginx+body".
--   luajit bench/http_vectors_nginx.lua [--all] [--no-luacluster]
-- --all prints every vector, not only the differences. Exits 0 when nginx is not installed
-- (saying so), 1 when luacluster itself misses an expectation.
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/bench/[^/]*$") or "."
package.path = here .. "/spec/?.lua;" .. here .. "/lua/?.lua;" .. package.path

local H = require("helper")
local U = require("http_util")
local vectors = dofile(H.root .. "/spec/data/http_vectors.lua")

local show_all, with_lc = false, true
for _, a in ipairs(arg) do
  if a == "--all" then show_all = true end
  if a == "--no-luacluster" then with_lc = false end
end

local function find_nginx()
  for _, path in ipairs({ "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx" }) do
    if H.sh("test -x " .. path) and select(2, H.sh("test -x " .. path)) == 0 then
      return path
    end
  end
  local out, rc = H.sh("command -v nginx")
  if rc == 0 and out:match("%S") then
    return (out:gsub("%s+$", ""))
  end
end

local nginx = find_nginx()
if not nginx then
  print("nginx is not installed: skipping the nginx comparison (apt-get install nginx-light or nginx)")
  os.exit(0)
end

-- ---- nginx, in a prefix of its own ----
local prefix = H.tmpdir()
local nport, bport = H.free_port(), H.free_port()
while bport == nport do bport = H.free_port() end
local lua_mod = "/usr/lib/nginx/modules/ngx_http_lua_module.so"
local ndk_mod = "/usr/lib/nginx/modules/ndk_http_module.so"
local with_lua = H.read_file(lua_mod) ~= "" and H.read_file(ndk_mod) ~= ""
for _, d in ipairs({ "logs", "body", "proxy", "fastcgi", "uwsgi", "scgi" }) do
  H.sh("mkdir -p " .. prefix .. "/" .. d)
end
H.write_file(prefix .. "/nginx.conf", ((with_lua and ("load_module " .. ndk_mod .. ";\nload_module " .. lua_mod .. ";\n") or "") .. [[
worker_processes 1;
daemon off;
master_process on;
pid PREFIX/nginx.pid;
error_log PREFIX/logs/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path PREFIX/body;
  proxy_temp_path PREFIX/proxy;
  fastcgi_temp_path PREFIX/fastcgi;
  uwsgi_temp_path PREFIX/uwsgi;
  scgi_temp_path PREFIX/scgi;
  client_header_timeout 1s;
  client_body_timeout 1s;
  server {
    listen 127.0.0.1:PORT;
    location / { return 200 "ok"; }
  }
]] .. (with_lua and [[
  server {
    listen 127.0.0.1:BPORT;
    location / { content_by_lua_block { ngx.req.read_body() ngx.print("ok") } }
  }
]] or "") .. "}\n"):gsub("PREFIX", prefix):gsub("BPORT", tostring(bport)):gsub("PORT", tostring(nport)))

local np = H.spawn({ nginx, "-e", prefix .. "/logs/error.log", "-p", prefix, "-c", prefix .. "/nginx.conf" }, { dir = prefix })
local up = H.wait_for(function()
  local s = H.connect(with_lua and bport or nport)
  if s then s:close() return true end
end, 5000)
if not up then
  print("nginx did not start: " .. np:output() .. H.read_file(prefix .. "/logs/error.log"))
  np:stop()
  os.exit(1)
end
local version = (select(1, H.sh(nginx .. " -v")):gsub("%s+$", ""))

-- ---- luacluster, with the same app as spec/http_strict_spec.lua ----
local lp, lport
if with_lc then
  lport = H.free_port()
  lp = H.start_app([[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req, res)
    return 200, "path=" .. tostring(req.path) .. "\nbody=" .. req:body()
  end, { header_timeout = 1000 }):listen()
  say("ready")
end
]], { "-w", 1, "-p", lport })
  if not lp:wait_output("ready", 5000) then
    print("luacluster did not start: " .. lp:output())
    with_lc = false
  end
  H.sleep(100)
end

-- ---- run ----
local rows, diffs, lc_misses, body_diffs = {}, 0, 0, 0
local by_group = {}
for _, v in ipairs(vectors) do
  local n = U.run_vector(nport, v, 2500)
  local l = with_lc and U.run_vector(lport, v, 2500) or nil
  local b = with_lua and U.run_vector(bport, v, 2500) or nil
  local nd = U.describe_result(n)
  local same = n.status == v.expect
  if not same then
    diffs = diffs + 1
    by_group[v.group] = (by_group[v.group] or 0) + 1
  end
  if l and l.status ~= v.expect then
    lc_misses = lc_misses + 1
  end
  if b and b.status ~= v.expect then
    body_diffs = body_diffs + 1
  end
  if show_all or not same or (b and b.status ~= v.expect) or (l and l.status ~= v.expect) then
    rows[#rows + 1] = string.format("| %s | %s | %d | %s | %s | %s | %s |", v.group, v.id, v.expect,
      l and U.describe_result(l) or "-", nd, b and U.describe_result(b) or "-", (v.ref or ""):gsub("|", "/"))
  end
end

print(string.format("%d vectors; %s; nginx (return 200) differs from the expected outcome on %d", #vectors, version, diffs))
if with_lua then
  print(string.format("nginx reading the body (lua module) differs on %d", body_diffs))
end
if with_lc then
  print(string.format("luacluster misses the expected outcome on %d", lc_misses))
end
local groups = {}
for g, n in pairs(by_group) do groups[#groups + 1] = g .. " " .. n end
table.sort(groups)
print("nginx differences by group: " .. table.concat(groups, ", "))
print("")
print("| group | vector | expected | luacluster | nginx | nginx+body | reference |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for _, row in ipairs(rows) do
  print(row)
end

np:stop()
if lp then lp:stop() end
H.cleanup()
H.sh("rm -rf " .. prefix)
os.exit(lc_misses == 0 and 0 or 1)
