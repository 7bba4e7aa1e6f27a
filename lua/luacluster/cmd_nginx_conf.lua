-- luacluster nginx-conf app.lua [-w N] [-p PORT] [--hosts h1,h2[:port],...] [--listen ADDR]
--                               [--static PREFIX=DIR]...
-- Prints an nginx fragment for the http context: an upstream with one server line per worker
-- slot of every host (each host runs the app in ports mode: slot i listens on port + i - 1),
-- keep-alive to the upstream, passive health checks, retries of idempotent requests on the
-- next slot, the forwarding headers, a server block that proxies to the upstream, and one
-- location per --static that nginx serves from disk itself (those requests never reach a
-- worker). build(o) -> text | nil, err is what run(o) prints; specs call it too.
local core = require("luacluster.core")
local defaults = require("luacluster.lib.defaults")

local MAX_FAILS, FAIL_TIMEOUT, KEEPALIVE, KEEPALIVE_TIMEOUT, CONNECT_TIMEOUT, STATIC_EXPIRES, build, run

-- the passive health check and keep-alive settings the fragment uses (and the README explains)
MAX_FAILS = 2
FAIL_TIMEOUT = 5       -- seconds a slot is left out after max_fails failures
KEEPALIVE = 32         -- idle upstream connections kept per nginx worker process
KEEPALIVE_TIMEOUT = 4  -- seconds; below luacluster's keepalive_timeout (5 s), so nginx closes first
CONNECT_TIMEOUT = 2    -- seconds; a host that is down (no answer at all) is skipped this fast
STATIC_EXPIRES = "1h"


local function basename(path)
  return path:match("([^/]*)$")
end


local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end


-- an upstream name from the app: its folder's name for .../NAME/app.lua, else the file's stem
local function upstream_name(abs)
  local stem = basename(abs):gsub("%.lua$", "")
  if stem == "app" or stem == "main" or stem == "init" then
    local dir = basename(dirname(abs))
    if dir ~= "" then
      stem = dir
    end
  end
  stem = stem:gsub("[^%w_]", "_")
  return "luacluster_" .. stem
end


local function is_ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return false
  end
  for _, octet in ipairs({ a, b, c, d }) do
    if #octet > 3 or tonumber(octet) > 255 then
      return false
    end
  end
  return true
end


local function is_ipv6(s)
  if not s:find(":", 1, true) or not s:match("^[%x:.]+$") or #s > 45 then
    return false
  end
  local _, colons = s:gsub(":", "")
  local double = s:find("::", 1, true)
  if colons < 2 or colons > 7 or (double and s:find("::", double + 1, true)) then
    return false
  end
  for group in (s .. ":"):gmatch("([^:]*):") do
    if #group > 4 and not is_ipv4(group) then
      return false
    end
  end
  return true
end


-- RFC 1123 host names: labels of letters, digits and '-', not starting or ending with '-'
local function is_hostname(s)
  if #s == 0 or #s > 253 then
    return false
  end
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or not label:match("^[%w-]+$") or label:match("^%-") or label:match("%-$") then
      return false
    end
  end
  return not s:match("^[%d.]+$") -- all digits and dots: a mistyped IPv4 address, not a name
end


local function parse_port(s)
  local n = s:match("^%d+$") and tonumber(s)
  if not n or n < 1 or n > 65535 then
    return nil
  end
  return n
end


-- "host", "host:port", "[v6]" or "[v6]:port" -> { host = as nginx writes it, port = n|nil } | nil, err
local function parse_host(entry)
  local host, port
  local v6, rest = entry:match("^%[([^%]]*)%](.*)$")
  if v6 then
    if not is_ipv6(v6) then
      return nil, "'" .. entry .. "' is not a valid IPv6 address"
    end
    host = "[" .. v6 .. "]"
    if rest ~= "" then
      port = rest:match("^:(.*)$")
      if not port then
        return nil, "'" .. entry .. "' is not host or host:port"
      end
    end
  elseif is_ipv6(entry) then
    host = "[" .. entry .. "]"
  else
    host, port = entry:match("^([^:]*):(.*)$")
    host = host or entry
    if not (is_ipv4(host) or is_hostname(host)) then
      return nil, "'" .. host .. "' is not a valid host name or address"
    end
  end
  if port then
    local n = parse_port(port)
    if not n then
      return nil, "'" .. entry .. "' has a bad port (1 to 65535)"
    end
    port = n
  end
  return { host = host, port = port }
end


local function parse_hosts(list)
  local hosts, seen = {}, {}
  for entry in (list .. ","):gmatch("([^,]*),") do
    entry = entry:match("^%s*(.-)%s*$")
    if entry == "" then
      return nil, "--hosts: empty host name in '" .. list .. "'"
    end
    local h, err = parse_host(entry)
    if not h then
      return nil, "--hosts: " .. err
    end
    local key = h.host .. ":" .. tostring(h.port)
    if seen[key] then
      return nil, "--hosts: '" .. entry .. "' is given twice"
    end
    seen[key] = true
    hosts[#hosts + 1] = h
  end
  return hosts
end


-- --listen: PORT, ADDR, ADDR:PORT, [V6] or [V6]:PORT, as nginx's listen takes them
local function parse_listen(s)
  if parse_port(s) then
    return s
  end
  if s:match("^%*:") then
    if parse_port(s:sub(3)) then
      return s
    end
    return nil, "--listen: bad port in '" .. s .. "'"
  end
  local h, err = parse_host(s)
  if not h then
    return nil, "--listen: " .. err
  end
  return h.port and (h.host .. ":" .. h.port) or h.host
end


-- characters nginx would read as something else inside a quoted string, or a variable
local function safe_path(s)
  return not s:find("[\"'\\$%c{};]")
end


local function parse_static(list)
  local out, seen = {}, {}
  for _, spec in ipairs(list) do
    local prefix, dir = spec:match("^([^=]*)=(.*)$")
    if not prefix then
      return nil, "--static needs URL_PREFIX=DIR, not '" .. spec .. "'"
    end
    if not prefix:match("^/[%w%-._~/]*$") or prefix:find("//", 1, true) or prefix:find("/%.%.?/") or prefix:find("/%.%.?$") then
      return nil, "--static: the URL prefix must be a path such as /static/ (letters, digits, - . _ ~ /), not '" .. prefix .. "'"
    end
    if prefix:sub(-1) ~= "/" then
      prefix = prefix .. "/"
    end
    if prefix == "/" then
      return nil, "--static: the URL prefix / would send every request to disk; use a prefix such as /static/"
    end
    if dir == "" then
      return nil, "--static " .. prefix .. ": no folder given"
    end
    local abs = core.realpath(dir .. "/.")
    if not abs then
      return nil, "--static " .. prefix .. ": '" .. dir .. "' is not a folder"
    end
    if not safe_path(abs) then
      return nil, "--static " .. prefix .. ": the folder '" .. abs .. "' has characters nginx cannot take (quotes, $, ;, braces)"
    end
    if seen[prefix] then
      return nil, "--static: the prefix " .. prefix .. " is given twice"
    end
    seen[prefix] = true
    out[#out + 1] = { prefix = prefix, dir = abs:gsub("/$", "") .. "/" }
  end
  return out
end


local function command_line(o, hosts_given)
  local parts = { "luacluster nginx-conf", o.app, "-w", tostring(o.workers), "-p", tostring(o.port) }
  if hosts_given then
    parts[#parts + 1] = "--hosts " .. o.hosts
  end
  if o.listen then
    parts[#parts + 1] = "--listen " .. o.listen
  end
  for _, s in ipairs(o.static or {}) do
    parts[#parts + 1] = "--static " .. s
  end
  return table.concat(parts, " ")
end


function build(o)
  if o.mode and o.mode ~= "ports" then
    return nil, "nginx-conf writes the config for --mode ports, not " .. o.mode
  end
  for _, k in ipairs({ "watch", "json", "control" }) do
    if o[k] then
      return nil, "--" .. k .. " is not an option of nginx-conf"
    end
  end
  local abs = core.realpath(o.app)
  if not abs then
    return nil, "cannot open " .. o.app .. ": no such file"
  end
  local workers = defaults.workers(o)
  if workers < 1 then
    return nil, "--workers must be at least 1 for nginx-conf"
  end
  local port = o.port or 8080
  if port < 1 then
    return nil, "--port must be from 1 to 65535 for nginx-conf"
  end
  local hosts = { { host = "127.0.0.1" } }
  if o.hosts then
    local err
    hosts, err = parse_hosts(o.hosts)
    if not hosts then
      return nil, err
    end
  end
  for _, h in ipairs(hosts) do
    if (h.port or port) + workers - 1 > 65535 then
      return nil, "ports " .. (h.port or port) .. " to " .. ((h.port or port) + workers - 1) .. " do not fit below 65536"
    end
  end
  local listen, lerr = parse_listen(o.listen or "80")
  if not listen then
    return nil, lerr
  end
  local statics, serr = parse_static(o.static or {})
  if not statics then
    return nil, serr
  end

  local name = upstream_name(abs)
  local app_name = basename(abs)
  local L = {}
  local function add(s)
    L[#L + 1] = s
  end
  add("# nginx fragment for the http context, from:")
  add("#   " .. command_line({ app = o.app, workers = workers, port = port, hosts = o.hosts,
    listen = o.listen, static = o.static }, o.hosts ~= nil))
  add("# Include it inside http { } (for example: put it in /etc/nginx/conf.d/" .. name:gsub("^luacluster_", "") .. ".conf).")
  add("# Every host below runs the same app in ports mode, its server listening on an address")
  add("# that nginx can reach (worker slot i serves port + i - 1):")
  for _, h in ipairs(hosts) do
    add("#   on " .. h.host .. ":  luacluster -m ports -w " .. workers .. " -p " .. (h.port or port) .. " " .. app_name)
  end
  add("")
  add("upstream " .. name .. " {")
  for _, h in ipairs(hosts) do
    local base = h.port or port
    for slot = 1, workers do
      add(string.format("    server %s:%d max_fails=%d fail_timeout=%ds;  # %s worker %d",
        h.host, base + slot - 1, MAX_FAILS, FAIL_TIMEOUT, h.host, slot))
    end
  end
  add("")
  add("    # keep-alive connections to the workers (idle ones per nginx worker process); nginx")
  add("    # closes an idle one before luacluster's keepalive_timeout (5 s) would")
  add("    keepalive " .. KEEPALIVE .. ";")
  add("    keepalive_requests 10000;")
  add("    keepalive_timeout " .. KEEPALIVE_TIMEOUT .. "s;")
  add("}")
  add("")
  add("server {")
  add("    listen " .. listen .. ";")
  for _, s in ipairs(statics) do
    add("")
    add("    # " .. s.prefix .. " is served by nginx from disk; these requests never reach a worker")
    add("    location ^~ " .. s.prefix .. " {")
    add("        alias \"" .. s.dir .. "\";")
    add("        expires " .. STATIC_EXPIRES .. ";")
    add("        add_header Cache-Control \"public\";")
    add("        etag on;")
    add("    }")
  end
  add("")
  add("    location / {")
  add("        proxy_pass http://" .. name .. ";")
  add("        proxy_http_version 1.1;")
  add("        proxy_set_header Connection \"\";")
  add("        proxy_set_header Host $host;")
  add("        proxy_set_header X-Real-IP $remote_addr;")
  add("        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
  add("        proxy_set_header X-Forwarded-Proto $scheme;")
  add("        proxy_connect_timeout " .. CONNECT_TIMEOUT .. "s;")
  add("        # a slot that refuses, fails or times out: the request goes to the next slot;")
  add("        # POST, PATCH and LOCK are not sent twice (non_idempotent is not set)")
  add("        proxy_next_upstream error timeout http_502 http_503 http_504;")
  add("        proxy_next_upstream_timeout 10s;")
  add("    }")
  add("}")
  return table.concat(L, "\n") .. "\n"
end


function run(o)
  local text, err = build(o)
  if not text then
    io.stderr:write("luacluster: ", err, "\n")
    return 2
  end
  io.stdout:write(text)
  io.stdout:flush()
  return 0
end


return {
  MAX_FAILS = MAX_FAILS,
  FAIL_TIMEOUT = FAIL_TIMEOUT,
  KEEPALIVE = KEEPALIVE,
  KEEPALIVE_TIMEOUT = KEEPALIVE_TIMEOUT,
  CONNECT_TIMEOUT = CONNECT_TIMEOUT,
  STATIC_EXPIRES = STATIC_EXPIRES,
  build = build,
  run = run,
}
