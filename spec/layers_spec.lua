-- The module graph of lua/luacluster: every module's `require`s, read from its source, the
-- ones at the top level apart from the ones inside functions. It asserts the layering the
-- library keeps (README "How it works"): no require cycle, a module requires only its own
-- layer or a lower one, and no require inside a function except a lazy optional one marked
-- `-- lazy:` on its line (a feature loaded only when the app asks for it).
-- Run it alone to print the graph: spec/run spec/layers_spec.lua.

local ROOT = (function()
  local here = debug.getinfo(1, "S").source:sub(2)
  local dir = here:match("^(.*)/spec/layers_spec%.lua$") or "."
  return dir
end)()
local LIB = ROOT .. "/lua"
local sorted_keys = require("luacluster.lib.tables").sorted_keys


-- ---- reading a module's requires ----

-- tokens of a Lua source: { kind = "name" | "string" | "op", v = text, line = n }
local function tokens(src)
  local out, i, n, line = {}, 1, #src, 1
  local function long_bracket(at)
    local eq = src:match("^%[(=*)%[", at)
    if not eq then
      return nil
    end
    local close = "]" .. eq .. "]"
    local s = at + #eq + 2
    local e = src:find(close, s, true) or n
    return src:sub(s, e - 1), e + #close
  end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line, i = line + 1, i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      local body, after = long_bracket(i + 2)
      if body then
        local _, nl = body:gsub("\n", "")
        line, i = line + nl, after
      else
        local e = src:find("\n", i, true) or n + 1
        out[#out + 1] = { kind = "comment", v = src:sub(i, e - 1), line = line }
        i = e
      end
    elseif c == "[" and src:match("^%[=*%[", i) then
      local body, after = long_bracket(i)
      out[#out + 1] = { kind = "string", v = body, line = line }
      local _, nl = body:gsub("\n", "")
      line, i = line + nl, after
    elseif c == '"' or c == "'" then
      local j, buf = i + 1, {}
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then
          buf[#buf + 1] = src:sub(j + 1, j + 1)
          j = j + 2
        elseif d == c then
          break
        else
          buf[#buf + 1] = d
          j = j + 1
        end
      end
      out[#out + 1] = { kind = "string", v = table.concat(buf), line = line }
      i = j + 1
    elseif c:match("[%a_]") then
      local w = src:match("^[%w_]+", i)
      out[#out + 1] = { kind = "name", v = w, line = line }
      i = i + #w
    elseif c:match("%d") then
      local w = src:match("^[%w_%.]+", i)
      i = i + #w
    else
      local op = src:match("^%.%.%.?", i) or src:match("^[=~<>]=", i) or c
      out[#out + 1] = { kind = "op", v = op, line = line }
      i = i + #op
    end
  end
  return out
end


-- { { name =, line =, in_function = bool, lazy = bool }, ... }: the literal requires of luacluster
-- modules (core, the C module, included)
local function requires(src)
  local toks = tokens(src)
  local lazy_lines = {}
  for _, t in ipairs(toks) do
    if t.kind == "comment" and t.v:match("^%-%-%s*lazy:") then
      lazy_lines[t.line] = true
    end
  end
  local list, stack, want_do, prev = {}, {}, 0, nil
  local function in_function()
    for k = 1, #stack do
      if stack[k] == "function" then
        return true
      end
    end
    return false
  end
  for k, t in ipairs(toks) do
    if t.kind == "name" then
      local w = t.v
      if w == "function" then
        stack[#stack + 1] = "function"
      elseif w == "if" or w == "repeat" then
        stack[#stack + 1] = w
      elseif w == "for" or w == "while" then
        stack[#stack + 1] = w
        want_do = want_do + 1
      elseif w == "do" then
        if want_do > 0 then
          want_do = want_do - 1
        else
          stack[#stack + 1] = "do"
        end
      elseif w == "end" or w == "until" then
        stack[#stack] = nil
      elseif w == "require" and not (prev and prev.kind == "op" and (prev.v == "." or prev.v == ":")) then
        local a, b = toks[k + 1], toks[k + 2]
        local name = (a and a.kind == "string" and a.v)
          or (a and a.v == "(" and b and b.kind == "string" and b.v)
          or (a and a.v == "," and b and b.kind == "string" and b.v) -- pcall(require, "x")
        if name and name:match("^luacluster%.") then
          list[#list + 1] = { name = name, line = t.line, in_function = in_function(), lazy = lazy_lines[t.line] or false }
        end
      end
    end
    if t.kind ~= "comment" then
      prev = t
    end
  end
  return list
end


-- every module of the library: name -> { path =, requires = }
local function modules()
  local mods = {}
  local p = io.popen("cd '" .. LIB .. "' && find luacluster -name '*.lua' | sort")
  for rel in p:lines() do
    local name = rel:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    local f = assert(io.open(LIB .. "/" .. rel))
    local src = f:read("*a")
    f:close()
    mods[name] = { path = "lua/" .. rel, requires = requires(src) }
  end
  p:close()
  return mods
end


-- ---- the layers ----
-- A module's layer is the first pattern its name matches; it may require its own layer or a
-- lower one (a smaller number). luacluster.core is the C module: the bottom.
local LAYERS = {
  { 0, "^luacluster%.core$" },
  { 1, "^luacluster%.lib%." },       -- shared lower layers: codec, log, coro, channel, ...
  { 2, "^luacluster%.sched%." },     -- scheduling: the built-in schedulers and their loader
  { 6, "^luacluster%.worker%.plugins$" }, -- the wiring of the worker's side (what plugs into it)
  { 3, "^luacluster%.worker%." },    -- the worker's side (and a forked child's)
  { 3, "^luacluster%.master%.core$" },     -- the master's core: worker objects and their life,
  { 3, "^luacluster%.master%.registry$" }, -- what plugs into it,
  { 3, "^luacluster%.master%.workers$" },  -- the one writer of a worker's state,
  { 3, "^luacluster%.master%.sequence$" }, -- one-at-a-time starts and stops,
  { 3, "^luacluster%.master%.routing$" },  -- worker-to-worker messages
  { 3, "^luacluster%.master%.shdict$" },   -- the shared dictionaries' regions (setup, spawn)
  { 4, "^luacluster%.serve%." },     -- what HTTP and net servers share: listening in any process
  { 8, "^luacluster%.boot$" },       -- every process's entry point (before the public pattern)
  { 7, "^luacluster%.cmd_" },        -- the commands (reload, status, ...), loaded by name
  { 5, "^luacluster%.[%a_]+$" },     -- the public modules: cluster, http, net, timer, ...
  { 5, "^luacluster%.ngx%." },       -- luacluster.ngx's parts (ngx.re, ngx.log, ngx.timer)
  { 5, "^luacluster%.net%." },
  { 5, "^luacluster%.ws%." },        -- WebSocket's parts (the handshake, the connection's Lua side)       -- luacluster.net's parts (outbound sockets, their pools)
  { 6, "^luacluster%.master%.pubsub_redis$" }, -- pubsub across hosts (uses pubsub, net, jobs_redis's RESP)
  { 6, "^luacluster%.master%." },    -- the master's parts that plug into its core
  { 7, "^luacluster%.cli%." },       -- the command line
}


local function layer_of(name)
  for _, l in ipairs(LAYERS) do
    if name:match(l[2]) then
      return l[1]
    end
  end
  return nil
end


-- the cycles of the graph (Tarjan's strongly connected components of more than one module)
local function cycles(mods)
  local index, low, on, st, out, n = {}, {}, {}, {}, {}, 0
  local names = sorted_keys(mods)
  local function visit(v)
    n = n + 1
    index[v], low[v] = n, n
    st[#st + 1], on[v] = v, true
    for _, r in ipairs(mods[v].requires) do
      local w = r.name
      if mods[w] then
        if not index[w] then
          visit(w)
          low[v] = math.min(low[v], low[w])
        elseif on[w] then
          low[v] = math.min(low[v], index[w])
        end
      end
    end
    if low[v] == index[v] then
      local comp = {}
      repeat
        local w = table.remove(st)
        on[w] = nil
        comp[#comp + 1] = w
      until w == v
      if #comp > 1 then
        table.sort(comp)
        out[#out + 1] = comp
      end
    end
  end
  for _, v in ipairs(names) do
    if not index[v] then
      visit(v)
    end
  end
  return out
end


local function report(mods)
  local names = sorted_keys(mods)
  local hidden, upward = {}, {}
  for _, name in ipairs(names) do
    local m = mods[name]
    for _, r in ipairs(m.requires) do
      if r.in_function and not r.lazy then
        hidden[#hidden + 1] = string.format("%s:%d requires %s inside a function", m.path, r.line, r.name)
      end
      local a, b = layer_of(name), layer_of(r.name)
      if a == nil then
        upward[#upward + 1] = string.format("%s is in no layer", name)
      elseif b ~= nil and b > a then
        upward[#upward + 1] = string.format("%s:%d (layer %d) requires %s (layer %d)", m.path, r.line, a, r.name, b)
      end
    end
  end
  return hidden, upward, cycles(mods)
end


-- While the library is being layered, how much of the old graph may remain (each step of the
-- work lowers these; the layering is done when both are 0 and these lines go).
local LEFT = { cycle_modules = 0, hidden = 0, upward = 0 }


describe("the module graph", function()
  local mods = modules()
  local hidden, upward, cyc = report(mods)

  it("reads requires at the top level and inside functions", function()
    local r = requires([==[
local a = require("luacluster.a")
local function f()
  for i = 1, 2 do local x = 1 end
  if x then return require "luacluster.b" end
end
local ok, c = pcall(require, "luacluster.c") -- a comment with require("luacluster.z")
local t = { f = function() return require("luacluster.d") end } -- lazy: an option
--[[ require("luacluster.y") ]]
local s = "require('luacluster.x')"
]==])
    assert.same({
      { name = "luacluster.a", line = 1, in_function = false, lazy = false },
      { name = "luacluster.b", line = 4, in_function = true, lazy = false },
      { name = "luacluster.c", line = 6, in_function = false, lazy = false },
      { name = "luacluster.d", line = 7, in_function = true, lazy = true },
    }, r)
  end)

  it("has no require cycle", function()
    local lines = {}
    for _, c in ipairs(cyc) do
      lines[#lines + 1] = #c .. " modules: " .. table.concat(c, " ")
    end
    local n = 0
    for _, c in ipairs(cyc) do
      n = n + #c
    end
    if n > LEFT.cycle_modules then
      assert.equal("", table.concat(lines, "\n"))
    end
  end)

  it("requires only downwards across its layers", function()
    if #upward > LEFT.upward then
      assert.equal("", table.concat(upward, "\n"))
    end
  end)

  it("has no require inside a function but the lazy optional ones", function()
    if #hidden > LEFT.hidden then
      assert.equal("", table.concat(hidden, "\n"))
    end
  end)
end)
