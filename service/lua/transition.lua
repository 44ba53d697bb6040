-- TRANSITION (after transition_fn.lua). KEYS: meta, events   ARGV: see transition_fn.lua.
return transition(KEYS[1], KEYS[2])
