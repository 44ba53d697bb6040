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
-- A group can resume from the stream when nothing it has not acknowledged was trimmed: its first
-- unacknowledged entry is still there, or (nothing pending, all it would read next lies past the
-- head) the entries added after its last read, `entries-added` less its `entries-read`, are no
-- more than the stream holds (as trainer/data.py checks; a group that never read has read 0). A
-- count Redis cannot tell counts as resumable: the cap still bounds the stream.
local xlen = redis.call('XLEN', KEYS[1])
local added = nil
local function can_resume(g, f)
  if not less(f, head[1]) then return true end
  if g['pending'] > 0 then return false end
  local read = g['entries-read']
  if type(read) ~= 'number' and g['last-delivered-id'] == '0-0' then read = 0 end
  if type(read) ~= 'number' then return true end
  if added == nil then
    local info = redis.call('XINFO', 'STREAM', KEYS[1])
    for i = 1, #info, 2 do if info[i] == 'entries-added' then added = info[i + 1] end end
  end
  return type(added) ~= 'number' or added - read <= xlen
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
  elseif can_resume(g, f) then
    resumable = min_id(resumable, f)
  end
end
if active == 0 then
  floor = resumable
  if #gs > 0 and floor == nil then
    local ms, seq = parse(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][1])
    floor = ms .. '-' .. (seq + 1)  -- no group can resume from the stream: all of it may go
  end
  if xlen > 2 * keep then
    local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', keep)
    local cap = newest[#newest][1]
    if floor == nil or less(floor, cap) then floor = cap end
  end
  if floor == nil then return 0 end
end
for _, id in ipairs(redis.call('HVALS', KEYS[2])) do floor = min_id(floor, id) end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
