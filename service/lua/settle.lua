-- SETTLE: close what GATE opened (after settle_fn.lua). KEYS: meta, out, pub, stage, scratch,
-- events, stats. Returns settle()'s code.
return settle(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
