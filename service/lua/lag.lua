-- LAG (after stream_helpers.lua). KEYS: meta, out   ARGV: cap, consumer_idle_ms.
-- {lag, group} of the slowest active group, without touching any payload; {-1, false} if the
-- dataset is cancelled, failed or gone (a waiting worker must notice that too).
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' or state == 'failed' or state == false then return {-1, false} end
local lag, who = slowest_lag(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {lag, who}
