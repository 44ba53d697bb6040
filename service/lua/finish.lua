-- FINISH: record a shard as complete (its Parquet written, then its batches published;
-- `samples_done` grew with each batch in SETTLE, `rows` is not counted again), and decide what to
-- queue next: the final task once every shard is complete, and the dataset's next shard (lazy
-- queueing, see service/queue.py). The script touches only the dataset's slot: what to queue is
-- recorded in `queuing` (task -> this shard) and returned; the caller adds it to the task stream
-- and then forgets it (lua/queued.lua). A re-run of the shard returns what is still recorded for
-- it, so a crash between the two is repaired by the shard's reclaimed task.
-- KEYS: meta, shards, open, events, stats, queuing
-- ARGV: shard, rows, now, events_maxlen, counters (JSON object, added to the meta's `llm.*`),
--       window (the dataset's share of shard tasks; empty: one task per recorded shard)
-- Returns {1 if newly recorded else 0, tasks to queue (shard numbers or 'final')...}.
local new = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if new == 1 then
  redis.call('HINCRBY', KEYS[1], 'shards_done', 1)
  for k, v in pairs(cjson.decode(ARGV[5])) do redis.call('HINCRBY', KEYS[1], 'llm.' .. k, v) end
  redis.call('HINCRBY', KEYS[5], 'shards_done', 1)
  local m = redis.call('HMGET', KEYS[1], 'shards_done', 'samples_done', 'samples_total', 'num_shards', 'state')
  -- Every shard done and the card not yet written: the event says `finalizing`, never `running`.
  local shown = m[5]
  if tonumber(m[1]) >= tonumber(m[4]) and shown == 'running' then shown = 'finalizing' end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'shard', 'data',
    cjson.encode({shard=tonumber(ARGV[1]), shards_done=tonumber(m[1]), samples_done=tonumber(m[2]),
                  samples_total=tonumber(m[3]), num_shards=tonumber(m[4]), state=shown, time=tonumber(ARGV[3])}))
  local live = m[5] ~= 'cancelled' and m[5] ~= 'failed'
  if tonumber(m[1]) >= tonumber(m[4]) and live and redis.call('HSETNX', KEYS[1], 'finalizing', ARGV[3]) == 1 then
    redis.call('HSET', KEYS[6], 'final', ARGV[1])
  end
  -- Lazy queueing: refill the dataset's window. Without a window, one shard recorded queues the
  -- next one; with one (its tenant's share, service/queue.py), as many as bring the shards queued
  -- and not yet recorded (next_shard - shards_done) up to it: none while a window shrinks, more
  -- than one when it grows, and always one when none would be left.
  local nxt = redis.call('HGET', KEYS[1], 'next_shard')
  if nxt and live then
    nxt = tonumber(nxt)
    local k = 1
    local window = tonumber(ARGV[6] or '')
    if window then k = math.max(window - (nxt - tonumber(m[1])), 0) end
    while k > 0 and nxt < tonumber(m[4]) do
      redis.call('HSET', KEYS[6], tostring(nxt), ARGV[1])
      nxt = nxt + 1
      k = k - 1
    end
    redis.call('HSET', KEYS[1], 'next_shard', nxt)
  end
end
local out = {new}
local q = redis.call('HGETALL', KEYS[6])
for i = 1, #q, 2 do
  if q[i + 1] == ARGV[1] then table.insert(out, q[i]) end
end
return out
