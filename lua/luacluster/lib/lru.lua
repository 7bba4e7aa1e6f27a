-- luacluster.lib.lru: a map of at most `max` entries that forgets the least recently used one
-- when a new one would go past it (lua-resty-lrucache's idea, without expiry). get and set are
-- O(1): a hash to the nodes of a doubly linked list, most recent first.
local _M = {}
local mt = { __index = _M }


function _M.new(max)
  assert(type(max) == "number" and max >= 0, "lru.new: max must be a number >= 0")
  local head = {}
  head.prev, head.next = head, head -- the list's sentinel
  return setmetatable({ max = max, n = 0, map = {}, head = head }, mt)
end


local function unlink(node)
  node.prev.next = node.next
  node.next.prev = node.prev
end


local function push_front(self, node)
  local head = self.head
  node.prev, node.next = head, head.next
  head.next.prev = node
  head.next = node
end


local function evict(self)
  while self.n > self.max do
    local last = self.head.prev
    unlink(last)
    self.map[last.key] = nil
    self.n = self.n - 1
  end
end


function _M:get(key)
  local node = self.map[key]
  if node == nil then
    return nil
  end
  unlink(node)
  push_front(self, node)
  return node.value
end


function _M:set(key, value)
  local node = self.map[key]
  if node then
    node.value = value
    unlink(node)
    push_front(self, node)
    return
  end
  node = { key = key, value = value }
  self.map[key] = node
  self.n = self.n + 1
  push_front(self, node)
  evict(self)
end


-- a new bound; entries past it go at once, least recently used first
function _M:set_max(max)
  assert(type(max) == "number" and max >= 0, "lru:set_max: max must be a number >= 0")
  self.max = max
  evict(self)
end


function _M:count()
  return self.n
end


return _M
