-- Shared helpers of gate.lua, lag.lua and trim.lua (service/scripts.py prepends this file).
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a); local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function groups(key)
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local t = {}
    for i = 1, #g, 2 do t[g[i]] = g[i + 1] end
    table.insert(out, t)
  end
  return out
end
-- A group is idle when every consumer of it last tried to read (XINFO CONSUMERS `idle`: ms since
-- its last XREADGROUP/XACK/XCLAIM, which a blocked reader renews on every call) more than
-- idle_ms ago; a group with no consumer yet is active. Returns the group's idle ms (-1: none).
local function group_idle(key, name)
  local least = -1
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', key, name)) do
    for i = 1, #c, 2 do
      if c[i] == 'idle' and (least < 0 or c[i + 1] < least) then least = c[i + 1] end
    end
  end
  return least
end
local function is_idle(key, name, idle_ms)
  local i = group_idle(key, name)
  return idle_ms > 0 and i >= 0 and i > idle_ms
end
-- The largest number of entries some active group attached to `key` has not read (0 with no
-- group), and that group's name; counts at most cap+1 entries when the server cannot tell a
-- group's lag directly. Idle groups (see is_idle) hold nothing back.
local function slowest_lag(key, cap, idle_ms)
  if redis.call('EXISTS', key) == 0 then return 0, false end
  local worst, who = 0, false
  for _, g in ipairs(groups(key)) do
    if not is_idle(key, g['name'], idle_ms) then
      local lag = g['lag']
      if type(lag) ~= 'number' then
        lag = #redis.call('XRANGE', key, '(' .. g['last-delivered-id'], '+', 'COUNT', cap + 1)
      end
      if lag > worst then worst, who = lag, g['name'] end
    end
  end
  return worst, who
end
