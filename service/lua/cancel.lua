-- CANCEL (after transition_fn.lua): cancel a queued or running dataset and free its stream keys
-- (service/keys.py `dataset_keys`); meta, events, errors and stats stay.
-- KEYS: meta, events, then the keys to delete   ARGV: as transition_fn.lua
-- Returns 1 if the dataset was cancelled now.
if transition(KEYS[1], KEYS[2]) ~= 1 then return 0 end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
