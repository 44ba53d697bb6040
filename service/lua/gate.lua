-- GATE: may batch (shard, seq) go? (service/queue.py `publish_window`, after stream_helpers.lua
-- and settle_fn.lua)
-- KEYS: meta, out, pub, open, stage, scratch, events, stats
-- ARGV: shard, seq, n, tokens, bytes, max_queued, consumer_idle_ms, events_maxlen, now
-- 1: the batch may go (the stream is now under `stage`); 0: (shard, seq) was published before (a
-- re-run); -1: the dataset is cancelled, failed or gone; -2: an active consumer group (one that
-- read within consumer_idle_ms, see is_idle) lags more than max_queued batches (the caller waits,
-- then sends again); -3: the shard's previous batch is not in the stream yet: batches of a shard
-- stay in order.
settle(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], KEYS[7], KEYS[8])  -- only after a transaction cut short: never expected
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' or state == 'failed' or state == false then return -1 end
local member = ARGV[1] .. ':' .. ARGV[2]
if redis.call('SISMEMBER', KEYS[3], member) == 1 then
  redis.call('HINCRBY', KEYS[8], 'duplicate_batches', 1)
  return 0
end
if slowest_lag(KEYS[2], tonumber(ARGV[6]), tonumber(ARGV[7])) > tonumber(ARGV[6]) then return -2 end
local seq = tonumber(ARGV[2])
if seq > 0 and redis.call('SISMEMBER', KEYS[3], ARGV[1] .. ':' .. (seq - 1)) == 0 then return -3 end
if redis.call('EXISTS', KEYS[2]) == 0 then  -- the first batch with no consumer attached: an empty stream
  redis.call('XGROUP', 'CREATE', KEYS[2], 'lw:init', '$', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', KEYS[2], 'lw:init')
end
-- The trim floor for this shard: a lower bound of the entry's id (XADD's '*' takes the later of
-- now and the stream's last id), since the id itself is only known after the XADD.
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[4], ARGV[1], t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. '-0')
redis.call('HSET', KEYS[6], 'xlen', redis.call('XLEN', KEYS[2]), 'member', member, 'n', ARGV[3],
           'tokens', ARGV[4], 'bytes', ARGV[5], 'emax', ARGV[8], 'now', ARGV[9])
redis.call('RENAME', KEYS[2], KEYS[5])
return 1
