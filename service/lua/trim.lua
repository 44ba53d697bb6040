-- TRIM (after stream_helpers.lua). KEYS: out, open   ARGV: keep, consumer_idle_ms.
-- Trims entries every active group acknowledged and whose shard is in Parquet; an idle group (see
-- is_idle) holds nothing: a trainer coming back to it is told to train from the Parquet copy
-- (trainer/data.py StreamTrimmed). With no active group the stream is capped at its newest `keep`
-- entries (read once per `keep` published, see service/queue.py), and what every idle group that
-- can still resume (none of its entries trimmed yet) acknowledged goes too: whichever of them
-- comes back finds what it needs, and one that already lost entries reads Parquet anyway.
-- Returns the number of entries removed.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if head == nil then return 0 end
local function min_id(a, b) if a == nil or less(b, a) then return b end return a end
local function ack_floor(g)  -- the first entry the group has not acknowledged
  if g['pending'] > 0 then return redis.call('XPENDING', KEYS[1], g['name'])[2] end
  local ms, seq = parse(g['last-delivered-id'])
  return ms .. '-' .. (seq + 1)
end
local gs = groups(KEYS[1])
local keep = tonumber(ARGV[1])
local idle_ms = tonumber(ARGV[2] or '0')
local floor, resumable, active = nil, nil, 0
for _, g in ipairs(gs) do
  local f = ack_floor(g)
  if not is_idle(KEYS[1], g['name'], idle_ms) then
    active = active + 1
    floor = min_id(floor, f)
  elseif not less(f, head[1]) then
    resumable = min_id(resumable, f)
  end
end
if active == 0 then
  floor = resumable
  if #gs > 0 and floor == nil then
    local ms, seq = parse(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1])
    floor = ms .. '-' .. (seq + 1)  -- no group can resume from the stream: all of it may go
  end
  if redis.call('XLEN', KEYS[1]) > 2 * keep then
    local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', keep)
    local cap = newest[#newest][1]
    if floor == nil or less(floor, cap) then floor = cap end
  end
  if floor == nil then return 0 end
end
for _, id in ipairs(redis.call('HVALS', KEYS[2])) do floor = min_id(floor, id) end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
