-- QUEUED: the tasks FINISH recorded for a shard are in the task stream now: forget them, unless a
-- later FINISH recorded them for another shard. KEYS: queuing   ARGV: shard, tasks...
-- Returns the number forgotten.
local n = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return n
