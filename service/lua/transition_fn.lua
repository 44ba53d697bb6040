-- Shared by transition.lua and cancel.lua (service/scripts.py prepends this file).
-- A guarded state change of the dataset whose meta is `meta`; returns 1 if it happened.
-- ARGV: new state, now, events_maxlen, allowed-from states (space separated)
local function transition(meta, events)
  local state = redis.call('HGET', meta, 'state')
  if state == false then return 0 end
  if not string.find(' ' .. ARGV[4] .. ' ', ' ' .. state .. ' ', 1, true) then return 0 end
  redis.call('HSET', meta, 'state', ARGV[1])
  if ARGV[1] == 'running' then redis.call('HSETNX', meta, 'started_at', ARGV[2])
  else redis.call('HSET', meta, 'finished_at', ARGV[2]) end
  redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', 'type', 'state', 'data',
    cjson.encode({state=ARGV[1], previous=state, time=tonumber(ARGV[2])}))
  return 1
end
