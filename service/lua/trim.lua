-- TRIM (after stream_helpers.lua). KEYS: out, open   ARGV: keep, consumer_idle_ms.
-- Trims entries every active group acknowledged and whose shard is in Parquet; an idle group (see
-- is_idle) holds nothing: a trainer coming back to it is told to train from the Parquet copy
-- (trainer/data.py StreamTrimmed). With no active group, caps the stream (see service/queue.py).
-- Returns the number of entries removed.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local gs = groups(KEYS[1])
local floor = nil
local function lower(id) if floor == nil or less(id, floor) then floor = id end end
local keep = tonumber(ARGV[1])
local idle_ms = tonumber(ARGV[2] or '0')
local active = 0
for _, g in ipairs(gs) do
  if is_idle(KEYS[1], g['name'], idle_ms) then
    -- nothing: the entries it still needs are in Parquet
  else
    active = active + 1
    if g['pending'] > 0 then
      lower(redis.call('XPENDING', KEYS[1], g['name'])[2])
    else
      local ms, seq = parse(g['last-delivered-id'])
      lower(ms .. '-' .. (seq + 1))
    end
  end
end
if active == 0 then
  if redis.call('XLEN', KEYS[1]) <= 2 * keep then return 0 end
  -- The oldest of the newest `keep` entries (read once per `keep` entries published).
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', keep)
  lower(newest[#newest][1])
end
for _, id in ipairs(redis.call('HVALS', KEYS[2])) do lower(id) end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
