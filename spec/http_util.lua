-- HTTP/1.x on raw sockets for the specs: parse the responses a server wrote on one
-- connection (several of them, pipelined), so a spec sees exactly what went over the wire.
local H = require("helper")

local U = {}


-- parse(data [, no_body]) -> list of responses, rest
-- Each response: { version, status, reason, headers = { lower-name = value joined by ", " },
-- fields = { {name, value}, ... } (as sent), body, chunked, raw }.
-- no_body[i] = true marks the i-th final response as an answer to HEAD (no body follows).
-- 1xx responses are in the list too (they never have a body). A response with neither
-- Content-Length nor chunked framing takes the rest of the data (it ends at the close).
function U.parse(data, no_body)
  no_body = no_body or {}
  local list, pos, final = {}, 1, 0
  while pos <= #data do
    local head_end = data:find("\r\n\r\n", pos, true)
    if not head_end then
      break
    end
    local head = data:sub(pos, head_end + 1)
    local version, status, reason = head:match("^HTTP/(%d%.%d) (%d%d%d) ?([^\r\n]*)\r\n")
    if not version then
      error("not an HTTP response at byte " .. pos .. ": " .. ("%q"):format(data:sub(pos, pos + 80)))
    end
    local r = { version = version, status = tonumber(status), reason = reason, headers = {}, fields = {} }
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
      r.fields[#r.fields + 1] = { name, value }
      local k = name:lower()
      r.headers[k] = r.headers[k] and (r.headers[k] .. ", " .. value) or value
    end
    local p = head_end + 4
    if r.status >= 200 then
      final = final + 1
    end
    local te, cl = r.headers["transfer-encoding"], tonumber(r.headers["content-length"])
    if r.status < 200 or r.status == 204 or r.status == 304 or (r.status >= 200 and no_body[final]) then
      r.body = ""
    elseif te and te:lower():find("chunked") then
      r.chunked = true
      local parts = {}
      while true do
        local line_end = data:find("\r\n", p, true)
        if not line_end then
          return list, data:sub(pos)
        end
        local size = tonumber(data:sub(p, line_end - 1):match("^%x+"), 16)
        if not size then
          error("bad chunk size line: " .. ("%q"):format(data:sub(p, line_end + 1)))
        end
        p = line_end + 2
        if size == 0 then
          local t_end = data:find("\r\n", p, true)
          while t_end and t_end > p do -- trailers
            p = t_end + 2
            t_end = data:find("\r\n", p, true)
          end
          if not t_end then
            return list, data:sub(pos)
          end
          p = t_end + 2
          break
        end
        if #data < p + size + 1 then
          return list, data:sub(pos)
        end
        parts[#parts + 1] = data:sub(p, p + size - 1)
        r.sizes = r.sizes or {}
        r.sizes[#r.sizes + 1] = size
        p = p + size + 2
      end
      r.body = table.concat(parts)
    elseif cl then
      if #data < p + cl - 1 then
        return list, data:sub(pos)
      end
      r.body = data:sub(p, p + cl - 1)
      p = p + cl
    else
      r.body = data:sub(p)
      p = #data + 1
    end
    r.raw = data:sub(pos, p - 1)
    list[#list + 1] = r
    pos = p
  end
  return list, data:sub(pos)
end


-- final responses only (no 1xx)
function U.finals(list)
  local out = {}
  for _, r in ipairs(list) do
    if r.status >= 200 then
      out[#out + 1] = r
    end
  end
  return out
end


-- Sends request text on a connected socket and reads until n complete final responses have
-- arrived (or EOF / timeout). -> responses, data, how ("eof", "timeout" or nil)
function U.exchange(sock, request, n, timeout_ms, no_body)
  if request and request ~= "" then
    sock:send(request)
  end
  n = n or 1
  local data, how = sock:read_until(function(d)
    local ok, list = pcall(U.parse, d, no_body)
    return ok and #U.finals(list) >= n
  end, timeout_ms or 3000)
  return U.finals((U.parse(data, no_body))), data, how
end


-- The JIT specs' run (spec/http_jit_spec.lua, spec/http_client_jit_spec.lua): the app src on
-- port with one worker, stopped when the spec ends (finally: busted's, of the spec), that says
-- "ready PID jit|nojit ..." -> its process and that line (nil when the JIT is off or the line
-- lacks want)
function U.jit_app(finally, src, port, want)
  local p = H.start_app(src, { "-w", 1, "-p", port })
  finally(function()
    p:stop()
    H.cleanup()
  end)
  local line = p:wait_output("ready %d+ [%a ]+", 5000)
  assert(line, p:output())
  assert(H.wait_listening(port, 5000), p:output())
  if not line:find("ready %d+ jit") or (want and not line:find(want, 1, true)) then
    return p, nil
  end
  return p, line
end


-- ... then its load: on one connection, rounds times the GETs of paths (in turn), each
-- round's answers given to check(list); then GET /aborts (the worker's count of aborted
-- traces, a number, then what they were) -> that response
function U.jit_aborts(port, paths, rounds, check)
  local s = assert(H.connect(port))
  local batch = {}
  for i, path in ipairs(paths) do
    batch[i] = "GET " .. path .. " HTTP/1.1\r\nHost: a\r\n\r\n"
  end
  batch = table.concat(batch)
  for _ = 1, rounds do
    local list = U.exchange(s, batch, #paths, 10000)
    assert(#list == #paths, #list .. " answers of " .. #paths)
    check(list)
  end
  local list = U.exchange(s, "GET /aborts HTTP/1.1\r\nHost: a\r\n\r\n", 1, 3000)
  s:close()
  return list[1]
end


-- One request on a fresh connection; reads to EOF. -> first final response (or nil), data, how
function U.once(port, request, timeout_ms, no_body)
  local data, how = H.http_raw(port, request, timeout_ms)
  if not data then
    return nil, data, how
  end
  local ok, list = pcall(U.parse, data, no_body)
  local finals = ok and U.finals(list) or {}
  return finals[1], data, how
end


-- True once the peer has closed the connection (EOF) within timeout_ms.
function U.closed_within(sock, timeout_ms)
  local _, how = sock:read_all(timeout_ms)
  return how == "eof"
end


-- A peer that closes while a request is still being written must not kill the spec with SIGPIPE.
local ffi = require("ffi")
pcall(ffi.cdef, "typedef void (*lc_sighandler_t)(int); lc_sighandler_t signal(int signum, lc_sighandler_t handler);")
ffi.C.signal(13, ffi.cast("lc_sighandler_t", 1)) -- SIGPIPE, SIG_IGN


-- Runs one request vector (spec/data/http_vectors.lua) on a fresh connection: -> result with
-- status (of the first final response, nil when none came), response, data (all bytes read),
-- how ("eof" / "timeout" / nil) and, after a 4xx/5xx, closed (whether the server then closed).
function U.run_vector(port, v, timeout_ms)
  local s, err = H.connect(port)
  if not s then
    return { error = err }
  end
  s:send(v.request)
  local data, how = s:read_until(function(d)
    local ok, list = pcall(U.parse, d)
    return ok and #U.finals(list) >= 1
  end, timeout_ms or 3000)
  local ok, list = pcall(U.parse, data)
  local first = ok and U.finals(list)[1] or nil
  local res = { status = first and first.status, response = first, data = data, how = how }
  if first and first.status >= 400 then
    res.closed = how == "eof" or select(2, s:read_all(2000)) == "eof"
  end
  s:close()
  return res
end


-- one line saying what a server did with a vector
function U.describe_result(res)
  if res.error then
    return "connect failed: " .. res.error
  end
  if res.status then
    return tostring(res.status) .. (res.closed == false and " (kept open)" or "")
  end
  if res.data == "" then
    return res.how == "eof" and "closed, no response" or "no response (timeout)"
  end
  return "no HTTP response: " .. ("%q"):format(res.data:sub(1, 40)):gsub("\
", "\n")
end


return U
