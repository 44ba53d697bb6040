-- Shared by gate.lua and settle.lua (service/scripts.py prepends this file).
-- Finish a publication GATE opened: the stream goes back under its name and, if the XADD between
-- added exactly one entry, the batch is recorded and a `progress` event says so. The shard's
-- Parquet file is written before its first batch is published, so a published sample is also a
-- stored one: `samples_done` advances here, batch by batch. 1: recorded; 0: nothing was open;
-- -5: the XADD added nothing (the batch is not recorded and will be sent again).
local function settle(meta, out, pub, stage, scratch, events, stats)
  local p = redis.call('HMGET', scratch, 'xlen', 'member', 'n', 'tokens', 'bytes', 'emax', 'now')
  if p[1] == false then return 0 end
  redis.call('DEL', scratch)
  if redis.call('EXISTS', stage) == 0 then return -5 end
  local added = redis.call('XLEN', stage) - tonumber(p[1])
  redis.call('RENAME', stage, out)
  if added ~= 1 then return -5 end
  redis.call('SADD', pub, p[2])
  redis.call('HINCRBY', meta, 'samples_published', p[3])
  redis.call('HINCRBY', meta, 'tokens_published', p[4])
  redis.call('HINCRBY', meta, 'batches_published', 1)
  redis.call('HINCRBY', stats, 'batches_published', 1)
  redis.call('HINCRBY', stats, 'samples_published', p[3])
  redis.call('HINCRBY', stats, 'bytes_published', p[5])
  local done = redis.call('HINCRBY', meta, 'samples_done', p[3])
  local m = redis.call('HMGET', meta, 'samples_published', 'samples_total')
  redis.call('XADD', events, 'MAXLEN', '~', p[6], '*', 'type', 'progress', 'data',
    cjson.encode({samples_published=tonumber(m[1]), samples_done=done, samples_total=tonumber(m[2]),
                  batch=p[2], time=tonumber(p[7])}))
  return 1
end
