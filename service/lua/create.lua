-- CREATE: claim a dataset id and write its whole meta hash and first event in one step, so a
-- taken name always has a state (service/queue.py `create_dataset`).
-- KEYS: meta, events   ARGV: events_maxlen, the `state` event's data, then field, value pairs
-- Returns 1 if created, 0 if the id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', 'state', 'data', ARGV[2])
return 1
