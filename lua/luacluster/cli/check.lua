-- `luacluster check app.lua` beyond compiling: every `require("literal")` of the app and of its
-- own modules (the .lua files it requires from its folder, followed in turn) must resolve on the
-- paths the app will have, so that a missing module is a file:line now instead of a worker
-- that fails at run time. Nothing is run: the files are only read and compiled. Modules the
-- binary itself provides (luacluster.core, ffi, jit, ...) are already loaded here and resolve.
local requires, check


-- ---- finding require("name") in Lua source ----

-- the level of a long bracket opening at i ("[[" -> 0, "[==[" -> 2), or nil
local function long_open(src, i)
  local eq = src:match("^%[(=*)%[", i)
  return eq and #eq
end


-- -> { { name =, line = }, ... } for each `require("name")` / `require "name"` / require[[name]],
-- outside comments and strings, not a field (`x.require`); a string followed by anything but
-- `)` (a name built at run time) is not one.
function requires(src)
  local list = {}
  local i, n, line = 1, #src, 1
  local last_token -- the previous significant token: "." or ":" make `require` a field
  local pending    -- after `require`: "name" | "paren"; then the string's value is the name
  local function newlines(a, b)
    local _, c = src:sub(a, b):gsub("\n", "")
    line = line + c
  end
  local function string_token(value, at_line)
    if pending == "name" then
      pending = { value = value, line = at_line, bare = true }
      return
    elseif pending == "paren" then
      pending = { value = value, line = at_line }
      return
    end
    pending = nil
  end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line = line + 1
      i = i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      local lvl = long_open(src, i + 2)
      if lvl then
        local close = src:find("]" .. string.rep("=", lvl) .. "]", i, true)
        local stop = close and close + lvl + 1 or n
        newlines(i, stop)
        i = stop + 1
      else
        local e = src:find("\n", i, true) or n + 1
        i = e
      end
    elseif c == '"' or c == "'" then
      local j, buf, at = i + 1, {}, line
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then
          local e = src:sub(j + 1, j + 1)
          if e == "\n" then line = line + 1 end
          buf[#buf + 1] = "\\" .. e
          j = j + 2
        elseif d == c then
          break
        elseif d == "\n" then
          break -- unfinished string: the compiler has said so already
        else
          buf[#buf + 1] = d
          j = j + 1
        end
      end
      local value = table.concat(buf)
      string_token(not value:find("\\", 1, true) and value or nil, at)
      last_token = "string"
      i = j + 1
    elseif c == "[" and long_open(src, i) then
      local lvl = long_open(src, i)
      local body_start = i + lvl + 2
      local close = src:find("]" .. string.rep("=", lvl) .. "]", body_start, true) or n + 1
      local value, at = src:sub(body_start, close - 1):gsub("^\n", ""), line
      newlines(i, close)
      string_token(value, at)
      last_token = "string"
      i = close + lvl + 2
    elseif c:match("[%a_]") then
      local word = src:match("^[%w_]+", i)
      if type(pending) == "table" and pending.bare then
        list[#list + 1] = { name = pending.value, line = pending.line }
      end
      pending = nil
      if word == "require" and last_token ~= "." and last_token ~= ":" then
        pending = "name"
      end
      last_token = word
      i = i + #word
    else
      local tok = c
      if c == "." then
        tok = src:match("^%.+", i)
      end
      if pending == "name" and c == "(" then
        pending = "paren"
      elseif type(pending) == "table" and (not pending.bare and c == ")" or pending.bare) then
        if pending.value then
          list[#list + 1] = { name = pending.value, line = pending.line }
        end
        pending = nil
      else
        pending = nil
      end
      last_token = tok
      i = i + #tok
    end
  end
  if type(pending) == "table" and pending.bare and pending.value then
    list[#list + 1] = { name = pending.value, line = pending.line }
  end
  return list
end


-- ---- resolving ----

-- -> the file that would be loaded ("" for a module the binary provides) | nil
local function resolve(name)
  if package.loaded[name] ~= nil or package.preload[name] ~= nil then
    return ""
  end
  local file = package.searchpath(name, package.path) or package.searchpath(name, package.cpath)
  if file then
    return file
  end
  local root = name:match("^([^.]+)%.") -- the all-in-one loader: a.b from a.so
  return root and package.searchpath(root, package.cpath) or nil
end


local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end


-- code that changes package.path or package.cpath itself: its modules may be found at run time
local function changes_paths(src)
  return src:find("package%.c?path%s*=") ~= nil or src:find("package%[%s*[\"']c?path[\"']%s*%]%s*=") ~= nil
end


-- check(app_path, app_dir) -> problems, notes: lists of "file:line: message" (problems empty
-- when all is well). The app itself has compiled already; its own modules (.lua files under
-- app_dir) are compiled too. A module not found by code that changes package.path or
-- package.cpath is a note, not a problem: the change may make it found.
function check(app_path, app_dir)
  local problems, notes, seen = {}, {}, {}
  local lenient = false
  local dir = app_dir:gsub("/*$", "/")
  local function visit(path, shown)
    if seen[path] then
      return
    end
    seen[path] = true
    local src = read(path)
    if not src then
      return
    end
    lenient = lenient or changes_paths(src)
    for _, r in ipairs(requires(src)) do
      local file = resolve(r.name)
      if not file and lenient then
        notes[#notes + 1] = string.format("%s:%d: module '%s' is not on the app's paths now (the app changes package.path: not checked)",
          shown, r.line, r.name)
      elseif not file then
        problems[#problems + 1] = string.format("%s:%d: module '%s' not found (on the app's package.path and package.cpath)",
          shown, r.line, r.name)
      elseif file:sub(1, #dir) == dir and file:match("%.lua$") then
        local _, err = loadfile(file)
        if err then
          problems[#problems + 1] = err
          seen[file] = true
        else
          visit(file, file)
        end
      end
    end
  end
  visit(app_path, app_path)
  return problems, notes
end


return {
  requires = requires,
  check = check,
}
