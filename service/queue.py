"""The Redis queue: shard tasks, idempotent publication, completion, backpressure, trimming.

Delivery semantics (ARCHITECTURE.md §4), stated once:
- A shard task is delivered at least once: tasks live in the stream `lw:tasks` read by the
  consumer group `workers`; a worker acknowledges a task only after every batch of the shard is
  published and its Parquet file is written, and a task left pending by a dead worker is
  reclaimed with XAUTOCLAIM after `claim_idle_ms`. A shard may therefore run twice.
- Publication is idempotent: a batch goes to `lw:{id}:out` only if its `(shard, seq)` is not in
  `lw:{id}:pub` (`GATE`, XADD and `SETTLE` in one MULTI/EXEC, see GATE below). Generation is a
  pure function of (spec, shard) and the batch size is pinned per dataset, so a re-run produces
  the same batches and publishes nothing new. Net: every sample lands in the stream exactly once.
- Completion is a task too: when the last shard is recorded, `FINISH` queues one `final` task
  (guarded, once) which writes the dataset card and only then sets `state=done`, so `done`
  implies that the stream, the Parquet files and the card are all complete.
- Backpressure: before each batch a worker waits while the slowest active consumer group
  attached to the output stream has more than `max_queued_batches` entries it has not read
  (checked inside `GATE`, so backpressure costs no extra round trip). A group whose consumers
  all last tried to read more than `consumer_idle_s` ago (XINFO CONSUMERS `idle`) is idle: it
  holds nothing back and nothing from trimming. While a worker waits, the dataset's `waiting_for`
  names the group and its lag (and a `waiting` event says so).
- Stream and Parquet agree: a shard's Parquet file is written before its first batch is
  published, so every stream entry's samples are also in Parquet (`samples_done` counts them,
  batch by batch); a failed dataset's stream is a subset of its Parquet files.
- Trimming (`TRIM`): entries below the oldest entry some active group has not acknowledged, and
  below the first entry of any shard whose Parquet file is not yet written, may go. With no
  active group attached the stream is capped instead: once it holds more than 2 x `keep`
  entries (`max_queued_batches`), entries older than the newest `keep` go, again never below the
  first entry of a shard not yet in Parquet; a late consumer reads the rest from the Parquet
  files (a trainer whose unread entries went is told so: trainer/data.py `StreamTrimmed`).
- Fair scheduling: shard tasks are queued lazily, at most `shard_window` per dataset at a time
  (`next_shard` in the meta hash counts what was queued). `create_dataset` queues the first
  window; each newly recorded shard (`FINISH`) queues the dataset's next shard at the tail of
  `lw:tasks`. Since every active dataset holds at most a window of tasks in the FIFO, a dataset
  created behind a huge one waits for at most about a window of the other's shards per active
  dataset (round robin over datasets), whatever their sizes. A shard that runs twice is recorded
  once, so it refills once; a reclaimed task is the same entry, so refills never duplicate.
- Cancel: `CANCEL` sets `state=cancelled` and deletes the dataset's stream keys (out, pub, stage,
  gate, open, shards) in one step; meta, events and errors stay so status shows the outcome.
  Workers skip its queued tasks; a running shard stops at its next cooperative check (between
  samples, inside long samples via `Context.checkpoint`, and before each batch in `GATE`).

The worker uses the synchronous `Queue`; the API uses the async helpers at the bottom.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from longweave.generators import streams as S

from .redis_client import sync_client

FINAL = "final"  # the shard field of a dataset's completion task
WAITING_REFRESH_S = 5.0  # a waiting worker rewrites `waiting_for` this often
WAITING_STALE_S = 60.0  # an older `waiting_for` is a dead worker's: the status ignores it

# -- Lua ------------------------------------------------------------------------------------------
_STREAM_ID_HELPERS = """
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a); local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function groups(key)
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local t = {}
    for i = 1, #g, 2 do t[g[i]] = g[i + 1] end
    table.insert(out, t)
  end
  return out
end
-- A group is idle when every consumer of it last tried to read (XINFO CONSUMERS `idle`: ms since
-- its last XREADGROUP/XACK/XCLAIM, which a blocked reader renews on every call) more than
-- idle_ms ago; a group with no consumer yet is active. Returns the group's idle ms (-1: none).
local function group_idle(key, name)
  local least = -1
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', key, name)) do
    for i = 1, #c, 2 do
      if c[i] == 'idle' and (least < 0 or c[i + 1] < least) then least = c[i + 1] end
    end
  end
  return least
end
local function is_idle(key, name, idle_ms)
  local i = group_idle(key, name)
  return idle_ms > 0 and i >= 0 and i > idle_ms
end
-- The largest number of entries some active group attached to `key` has not read (0 with no
-- group), and that group's name; counts at most cap+1 entries when the server cannot tell a
-- group's lag directly. Idle groups (see is_idle) hold nothing back.
local function slowest_lag(key, cap, idle_ms)
  if redis.call('EXISTS', key) == 0 then return 0, false end
  local worst, who = 0, false
  for _, g in ipairs(groups(key)) do
    if not is_idle(key, g['name'], idle_ms) then
      local lag = g['lag']
      if type(lag) ~= 'number' then
        lag = #redis.call('XRANGE', key, '(' .. g['last-delivered-id'], '+', 'COUNT', cap + 1)
      end
      if lag > worst then worst, who = lag, g['name'] end
    end
  end
  return worst, who
end
"""

# Publication is one MULTI/EXEC transaction per window of batches, three commands per batch:
#   EVALSHA GATE ...; XADD {stage} NOMKSTREAM * shard .. seq .. n .. data <payload>; EVALSHA SETTLE ...
# The payload never passes through Lua: handing half a megabyte to a script costs Redis two extra
# copies (about 200 us per 526 KiB batch, 13% of the throughput), while a plain XADD stores the
# argument it read. GATE decides; when the batch may go it renames the output stream to the
# dataset's stage key, so the XADD lands in the real stream, and SETTLE renames it back and
# records the batch. When GATE refuses, the stage key does not exist and the NOMKSTREAM XADD is a
# no-op. The transaction makes the three steps one atomic unit (nobody ever sees the stage key,
# the AOF holds all of it or none of it); consumers blocked on the stream are served after EXEC,
# when the stream is back under its name.
_SETTLE_FN = """
-- Finish a publication GATE opened: the stream goes back under its name and, if the XADD between
-- added exactly one entry, the batch is recorded and a `progress` event says so. The shard's
-- Parquet file is written before its first batch is published, so a published sample is also a
-- stored one: `samples_done` advances here, batch by batch. 1: recorded; 0: nothing was open;
-- -5: the XADD added nothing (the batch is not recorded and will be sent again).
local function settle(meta, out, pub, stage, scratch, events)
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
  redis.call('HINCRBY', 'lw:stats', 'batches_published', 1)
  redis.call('HINCRBY', 'lw:stats', 'samples_published', p[3])
  redis.call('HINCRBY', 'lw:stats', 'bytes_published', p[5])
  local done = redis.call('HINCRBY', meta, 'samples_done', p[3])
  local m = redis.call('HMGET', meta, 'samples_published', 'samples_total')
  redis.call('XADD', events, 'MAXLEN', '~', p[6], '*', 'type', 'progress', 'data',
    cjson.encode({samples_published=tonumber(m[1]), samples_done=done, samples_total=tonumber(m[2]),
                  batch=p[2], time=tonumber(p[7])}))
  return 1
end
"""

# KEYS: meta, out, pub, open, stage, scratch, events
# ARGV: shard, seq, n, tokens, bytes, max_queued, consumer_idle_ms, events_maxlen, now
# 1: the batch may go (the stream is now under `stage`); 0: (shard, seq) was published before (a
# re-run); -1: the dataset is cancelled, failed or gone; -2: an active consumer group (one that
# read within consumer_idle_ms, see is_idle) lags more than max_queued batches (the caller waits, then sends again); -3: the shard's previous batch is not
# in the stream yet: batches of a shard stay in order.
GATE = _STREAM_ID_HELPERS + _SETTLE_FN + """
settle(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], KEYS[7])  -- only after a transaction cut short: never expected
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' or state == 'failed' or state == false then return -1 end
local member = ARGV[1] .. ':' .. ARGV[2]
if redis.call('SISMEMBER', KEYS[3], member) == 1 then
  redis.call('HINCRBY', 'lw:stats', 'duplicate_batches', 1)
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
"""

# KEYS: meta, out, pub, stage, scratch, events. See GATE.
SETTLE = _SETTLE_FN + """
return settle(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
"""

# KEYS: meta, shards, open, events, tasks   ARGV: shard, rows, now, events_maxlen, dataset id, stats
# Records a shard as complete (its Parquet written, then its batches published; `samples_done`
# grew with each batch in SETTLE, `rows` is not counted again); queues the final
# task once when every shard is complete. Returns 1 if newly recorded, 0 if it was already.
# `stats` (JSON object of counters, e.g. the LLM steps' requests and rejections) is added to the
# dataset's `llm.*` fields in the same guarded step, so a shard that ran twice counts once.
FINISH = """
local new = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if new == 1 then
  redis.call('HINCRBY', KEYS[1], 'shards_done', 1)
  for k, v in pairs(cjson.decode(ARGV[6])) do redis.call('HINCRBY', KEYS[1], 'llm.' .. k, v) end
  redis.call('HINCRBY', 'lw:stats', 'shards_done', 1)
  local m = redis.call('HMGET', KEYS[1], 'shards_done', 'samples_done', 'samples_total', 'num_shards', 'state')
  -- Every shard done and the card not yet written: the event says `finalizing`, never `running`.
  local shown = m[5]
  if tonumber(m[1]) >= tonumber(m[4]) and shown == 'running' then shown = 'finalizing' end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'shard', 'data',
    cjson.encode({shard=tonumber(ARGV[1]), shards_done=tonumber(m[1]), samples_done=tonumber(m[2]),
                  samples_total=tonumber(m[3]), num_shards=tonumber(m[4]), state=shown, time=tonumber(ARGV[3])}))
  if tonumber(m[1]) >= tonumber(m[4]) and m[5] ~= 'cancelled' and m[5] ~= 'failed'
     and redis.call('HSETNX', KEYS[1], 'finalizing', ARGV[3]) == 1 then
    redis.call('XADD', KEYS[5], '*', 'dataset', ARGV[5], 'shard', 'final')
  end
  -- Lazy queueing (see the module docstring): one shard recorded, the next one queued.
  local nxt = redis.call('HGET', KEYS[1], 'next_shard')
  if nxt and tonumber(nxt) < tonumber(m[4]) and m[5] ~= 'cancelled' and m[5] ~= 'failed' then
    redis.call('HINCRBY', KEYS[1], 'next_shard', 1)
    redis.call('XADD', KEYS[5], '*', 'dataset', ARGV[5], 'shard', nxt)
  end
end
return new
"""

# KEYS: meta, events   ARGV: new state, now, events_maxlen, allowed-from states (space separated)
# A guarded state change; returns 1 if it happened.
_TRANSITION_BODY = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == false then return 0 end
if not string.find(' ' .. ARGV[4] .. ' ', ' ' .. state .. ' ', 1, true) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
if ARGV[1] == 'running' then redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
else redis.call('HSET', KEYS[1], 'finished_at', ARGV[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'state', 'data',
  cjson.encode({state=ARGV[1], previous=state, time=tonumber(ARGV[2])}))
"""
TRANSITION = "local function transition()\n" + _TRANSITION_BODY + "return 1\nend\nreturn transition()\n"

# KEYS: meta, events, out, pub, stage, gate, open, shards   ARGV: as TRANSITION, then the dataset id
# Cancel (from queued or running) and free the dataset's stream keys; meta and events stay.
# Returns 1 if the dataset was cancelled now.
CANCEL = "local function transition()\n" + _TRANSITION_BODY + """return 1
end
local ok = transition()
if ok ~= 1 then return 0 end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('SREM', 'lw:trim-later', ARGV[5])
return 1
"""

# KEYS: meta, out   ARGV: cap, consumer_idle_ms. {lag, group} of the slowest active group, without
# touching any payload; {-1, false} if the dataset is cancelled, failed or gone (a waiting worker
# must notice that too).
LAG = _STREAM_ID_HELPERS + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' or state == 'failed' or state == false then return {-1, false} end
local lag, who = slowest_lag(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {lag, who}
"""

# KEYS: out, open   ARGV: keep, consumer_idle_ms. Trims entries every active group acknowledged
# and whose shard is in Parquet; an idle group (see is_idle) holds nothing: a trainer coming back
# to it is told to train from the Parquet copy (trainer/data.py StreamTrimmed). With no active
# group, caps the stream (see the module docstring). Returns the number of entries removed.
TRIM = _STREAM_ID_HELPERS + """
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
"""


def now() -> float:
    return round(time.time(), 3)


@dataclass
class Task:
    entry_id: str
    dataset: str
    shard: int | None  # None: the dataset's final task


def _task(entry_id: Any, fields: dict[Any, Any]) -> Task | None:
    f = {_s(k): _s(v) for k, v in fields.items()}
    if "dataset" not in f or "shard" not in f:
        return None
    shard = None if f["shard"] == FINAL else int(f["shard"])
    return Task(_s(entry_id), f["dataset"], shard)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Queue:
    """Synchronous queue operations of a worker (one Redis connection pool per process)."""

    def __init__(self, url: str, consumer: str | None = None, events_maxlen: int = 1000,
                 keep_unconsumed: int = 256, consumer_idle_s: float = 600.0) -> None:
        self.r = sync_client(url)
        self.keep_unconsumed = keep_unconsumed  # entries a stream with no consumer group keeps (TRIM)
        self.consumer = consumer or consumer_name()
        self.events_maxlen = events_maxlen
        self.consumer_idle_ms = int(consumer_idle_s * 1000)  # a group quiet this long holds nothing back
        # Sent by SHA inside MULTI (redis-py would otherwise ask SCRIPT EXISTS before every window).
        self._gate = self.r.register_script(GATE)
        self._settle = self.r.register_script(SETTLE)
        self._load_publish_scripts()
        self._finish = self.r.register_script(FINISH)
        self._transition = self.r.register_script(TRANSITION)
        self._trim = self.r.register_script(TRIM)
        self._lag = self.r.register_script(LAG)

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(S.TASKS, S.WORKERS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- tasks -----------------------------------------------------------------------------
    def claim(self, idle_ms: int, block_ms: int) -> Task | None:
        """A task of a dead worker (idle past `idle_ms`) if any, else a new one."""
        _, claimed, *_ = self.r.xautoclaim(S.TASKS, S.WORKERS_GROUP, self.consumer, idle_ms, "0-0", count=1)
        for entry_id, fields in claimed:
            if fields is None:  # deleted while pending
                self.ack(_s(entry_id))
                continue
            self.r.hincrby(S.STATS, "tasks_reclaimed", 1)
            return _task(entry_id, fields) or self._drop(entry_id)
        res = self.r.xreadgroup(S.WORKERS_GROUP, self.consumer, {S.TASKS: ">"}, count=1, block=block_ms)
        for _, entries in res or []:
            for entry_id, fields in entries:
                return _task(entry_id, fields) or self._drop(entry_id)
        return None

    def _drop(self, entry_id: Any) -> None:
        self.ack(_s(entry_id))

    def touch(self, entry_id: str) -> None:
        """Reset the idle time of a task this worker still works on, so nobody reclaims it."""
        self.r.xclaim(S.TASKS, S.WORKERS_GROUP, self.consumer, 0, [entry_id], justid=True)

    def ack(self, entry_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(S.TASKS, S.WORKERS_GROUP, entry_id)
        pipe.xdel(S.TASKS, entry_id)  # acknowledged tasks are history: keep the stream short
        pipe.execute()

    # -- datasets --------------------------------------------------------------------------
    def meta(self, dataset: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.r.hgetall(S.meta_key(dataset)).items()}

    def state(self, dataset: str) -> str | None:
        v = self.r.hget(S.meta_key(dataset), "state")
        return None if v is None else _s(v)

    def transition(self, dataset: str, state: str, allowed_from: tuple[str, ...]) -> bool:
        return bool(self._transition(keys=[S.meta_key(dataset), S.events_key(dataset)],
                                     args=[state, now(), self.events_maxlen, " ".join(allowed_from)]))

    def set_tokenizer(self, dataset: str, info: dict[str, Any], path: str) -> None:
        self.r.hset(S.meta_key(dataset), mapping={
            "tokenizer": json.dumps({"name": info["name"], "sha256": info["sha256"]}), "tokenizer_path": path})

    def record_error(self, dataset: str, message: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(S.errors_key(dataset), json.dumps({"time": now(), "message": message[:2000]}))
        pipe.hincrby(S.meta_key(dataset), "errors", 1)  # lets a status read skip the list when 0
        pipe.ltrim(S.errors_key(dataset), 0, 49)
        pipe.xadd(S.events_key(dataset), {"type": "error", "data": json.dumps({"message": message[:2000]})},
                  maxlen=self.events_maxlen, approximate=True)
        pipe.execute()

    def fail(self, dataset: str, message: str) -> None:
        self.record_error(dataset, message)
        self.r.hset(S.meta_key(dataset), "error", message[:2000])
        self.transition(dataset, "failed", ("queued", "running"))

    def attempt(self, dataset: str, shard: int) -> int:
        return int(self.r.hincrby(S.meta_key(dataset), f"attempts:{shard}", 1))

    def start_attempt(self, dataset: str, shard: int) -> tuple[int, int, int]:
        """Count one more start of `shard` before its work begins; returns the (starts, failures,
        peak RSS of the last run) seen before this one. Starts that neither failed nor finished are
        workers killed mid-shard (the OOM killer's SIGKILL leaves no other trace)."""
        meta = S.meta_key(dataset)
        pipe = self.r.pipeline(transaction=True)
        pipe.hmget(meta, f"starts:{shard}", f"attempts:{shard}", f"rss:{shard}")
        pipe.hincrby(meta, f"starts:{shard}", 1)
        got, _ = pipe.execute()
        return tuple(int(v or 0) for v in got)  # type: ignore[return-value]

    def unstart(self, dataset: str, shard: int) -> None:
        """Take back a start that ended for a reason other than the shard (Redis unreachable)."""
        self.r.hincrby(S.meta_key(dataset), f"starts:{shard}", -1)

    def note_rss(self, dataset: str, shard: int, rss: int) -> None:
        self.r.hset(S.meta_key(dataset), f"rss:{shard}", rss)

    # -- output ----------------------------------------------------------------------------
    def _load_publish_scripts(self) -> None:
        for script in (self._gate, self._settle):
            self.r.script_load(script.script)

    def publish(self, dataset: str, shard: int, seq: int, n: int, data: bytes, tokens: int,
                max_queued: int) -> int:
        """1: published now; 0: published before (a re-run); -1: dataset cancelled or failed;
        -2: a consumer group lags more than `max_queued` batches (wait, then call again);
        -3: the shard's previous batch is not published yet."""
        return self.publish_window(dataset, shard, seq, [(data, n, tokens)], max_queued)[0]

    def publish_window(self, dataset: str, shard: int, first_seq: int, batches: list[tuple[bytes, int, int]],
                       max_queued: int) -> list[int]:
        """`publish` for consecutive batches (data, samples, tokens) in one round trip.

        One transaction (GATE, XADD, SETTLE per batch, see GATE); -3 means "an earlier batch of
        this window was refused (-2), publish that one first", so a shard's batches stay in order.
        """
        meta, out, pub = S.meta_key(dataset), S.out_key(dataset), S.published_key(dataset)
        stage, scratch, events = S.stage_key(dataset), S.gate_key(dataset), S.events_key(dataset)
        for _ in range(2):
            pipe = self.r.pipeline(transaction=True)
            for i, (data, n, tokens) in enumerate(batches):
                seq = first_seq + i
                pipe.evalsha(self._gate.sha, 7, meta, out, pub, S.open_key(dataset), stage, scratch, events,
                             shard, seq, n, tokens, len(data), max_queued, self.consumer_idle_ms,
                             self.events_maxlen, now())
                pipe.execute_command("XADD", stage, "NOMKSTREAM", "*", S.F_SHARD, shard, S.F_SEQ, seq,
                                     S.F_N, n, S.F_DATA, data)
                pipe.evalsha(self._settle.sha, 6, meta, out, pub, stage, scratch, events)
            try:
                res = pipe.execute()
            except redis.exceptions.NoScriptError:
                # A restarted server forgot the scripts: nothing in the transaction took effect
                # (a GATE that did not run opens nothing, so its XADD and SETTLE are no-ops).
                self._load_publish_scripts()
                continue
            out_codes = []
            for i in range(len(batches)):
                gate, settled = int(res[3 * i]), int(res[3 * i + 2])
                if gate == 1 and settled != 1:
                    raise RuntimeError(f"{dataset} shard {shard} batch {first_seq + i}: the XADD of the "
                                       "publishing transaction added nothing")
                out_codes.append(gate)
            return out_codes
        raise RuntimeError("the publishing scripts could not be loaded into Redis")

    def finish_shard(self, dataset: str, shard: int, rows: int, stats: dict[str, int] | None = None) -> bool:
        return bool(self._finish(keys=[S.meta_key(dataset), S.shards_key(dataset), S.open_key(dataset),
                                       S.events_key(dataset), S.TASKS],
                                 args=[shard, rows, now(), self.events_maxlen, dataset, json.dumps(stats or {})]))

    def trim(self, dataset: str) -> int:
        return int(self._trim(keys=[S.out_key(dataset), S.open_key(dataset)],
                              args=[self.keep_unconsumed, self.consumer_idle_ms]))

    def cancelled(self, dataset: str) -> bool:
        """True once the dataset is cancelled, failed or gone (a running shard's cooperative check)."""
        state = self.state(dataset)
        return state is None or state in ("cancelled", "failed")

    # Consumers keep acknowledging after a dataset's last shard, when no worker trims on its way
    # through any more; idle workers trim those datasets (`housekeeping` in service/worker.py).
    def trim_later(self, dataset: str) -> None:
        self.r.sadd(S.TRIM_LATER, dataset)

    def trim_pending(self, limit: int = 50) -> list[str]:
        return [_s(d) for d in self.r.srandmember(S.TRIM_LATER, limit) or []]

    def trim_finished(self, dataset: str) -> None:
        """Trim a finished dataset's stream; forget it once the stream is empty or gone, or holds no
        group and no more than a stream with no consumer keeps (`keep_unconsumed`)."""
        self.trim(dataset)
        out = S.out_key(dataset)
        length = self.r.xlen(out)
        if (not self.r.exists(S.meta_key(dataset)) or length == 0
                or (length <= self.keep_unconsumed and not self.r.xinfo_groups(out))):
            self.r.srem(S.TRIM_LATER, dataset)

    def lag(self, dataset: str, cap: int) -> int:
        """Unread entries of the slowest active consumer group (counted up to cap+1 when Redis
        cannot say); -1 if the dataset is cancelled, failed or gone."""
        return self.slowest(dataset, cap)[0]

    def slowest(self, dataset: str, cap: int) -> tuple[int, str | None]:
        """`lag` and the name of the group that has it (None when no active group lags)."""
        lag, who = self._lag(keys=[S.meta_key(dataset), S.out_key(dataset)], args=[cap, self.consumer_idle_ms])
        return int(lag), (_s(who) if who else None)

    def set_waiting(self, dataset: str, group: str | None, lag: int = 0, event: bool = True) -> None:
        """Say in the status (`waiting_for`) and, with `event`, as an SSE `waiting` event that
        backpressure holds production for `group` (None: it no longer does). A waiting worker
        refreshes it every few seconds; the API ignores one older than WAITING_STALE_S (its
        worker died while waiting)."""
        pipe = self.r.pipeline(transaction=True)
        data: dict[str, Any] | None = None
        if group is None:
            pipe.hdel(S.meta_key(dataset), "waiting_for")
        else:
            data = {"group": group, "lag": lag, "since": now()}
            pipe.hset(S.meta_key(dataset), "waiting_for", json.dumps(data))
        if event:
            pipe.xadd(S.events_key(dataset), {"type": "waiting", "data": json.dumps({"waiting_for": data, "time": now()})},
                      maxlen=self.events_maxlen, approximate=True)
        pipe.execute()


# -- API side (async) -----------------------------------------------------------------------------
def llm_counters(meta: dict[str, str]) -> dict[str, int]:
    """The `llm.*` counters FINISH adds to a dataset's meta, without the prefix."""
    return {k.removeprefix("llm."): int(v) for k, v in meta.items() if k.startswith("llm.")}


def new_dataset_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


async def create_dataset(r: aioredis.Redis, dataset: str, tenant: str, spec_json: str, kind: str,
                         num_samples: int, num_shards: int, shard_size: int, batch_size: int,
                         events_maxlen: int, shard_window: int = 8) -> bool:
    """Register a dataset and queue its first `shard_window` shard tasks (FINISH queues the
    rest, one per recorded shard); False if the id is taken."""
    t = now()
    # HSETNX on `owner` claims the id atomically; only the winner fills in the rest.
    if not await r.hsetnx(S.meta_key(dataset), "owner", tenant):
        return False
    pipe = r.pipeline(transaction=True)
    pipe.hset(S.meta_key(dataset), mapping={
        "spec": spec_json, "kind": kind, "state": "queued", "samples_total": num_samples,
        "num_shards": num_shards, "shard_size": shard_size, "batch_size": batch_size,
        "created_at": t, "samples_published": 0, "tokens_published": 0, "batches_published": 0,
        "samples_done": 0, "shards_done": 0, "next_shard": min(shard_window, num_shards)})
    pipe.zadd(S.tenant_key(tenant), {dataset: t})
    pipe.xadd(S.events_key(dataset), {"type": "state", "data": json.dumps({"state": "queued", "time": t})},
              maxlen=events_maxlen, approximate=True)
    await pipe.execute()
    # Tasks go in after the meta hash exists.
    pipe = r.pipeline(transaction=False)
    for shard in range(min(shard_window, num_shards)):
        pipe.xadd(S.TASKS, {"dataset": dataset, "shard": shard})
    await pipe.execute()
    return True


async def cancel_dataset(r: aioredis.Redis, dataset: str, events_maxlen: int) -> bool:
    """Cancel a queued or running dataset and free its stream keys (see CANCEL)."""
    script = r.register_script(CANCEL)
    keys = [S.meta_key(dataset), S.events_key(dataset), S.out_key(dataset), S.published_key(dataset),
            S.stage_key(dataset), S.gate_key(dataset), S.open_key(dataset), S.shards_key(dataset)]
    return bool(await script(keys=keys, args=["cancelled", now(), events_maxlen, "queued running", dataset]))
