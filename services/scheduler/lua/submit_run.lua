-- submit_run.lua: create a run and its steps, and queue the steps that have no dependencies.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'idem:'..request_id   STRING  request id -> run id (read, written)
--   P..'r:'..run_id          HASH    the run (written)
--   P..'s:'..run_id..':'..s  HASH    each step (written)
--   P..'q:'..queue           ZSET    ready steps per queue (ZADD)
--   P..'e:'..run_id          STREAM  run events (XADD)
-- ARGV: P, run_id, run fields JSON (flat object), steps JSON (list), now_ms, request_id, idem_ttl_s
-- Returns: {'created', run_id} or {'exists', existing_run_id}.
local P, run_id, now = ARGV[1], ARGV[2], ARGV[5]
local request_id, idem_ttl = ARGV[6], tonumber(ARGV[7])
if request_id ~= '' then
  local existing = redis.call('GET', P .. 'idem:' .. request_id)
  if existing then return {'exists', existing} end
  redis.call('SET', P .. 'idem:' .. request_id, run_id, 'EX', idem_ttl)
end
local rh = run_hash(P, run_id)
if redis.call('EXISTS', rh) == 1 then return {'exists', run_id} end
local run = cjson.decode(ARGV[3])
local steps = cjson.decode(ARGV[4])
local ids = {}
for _, s in ipairs(steps) do table.insert(ids, s.step_id) end
redis.call('HSET', rh, 'state', 'QUEUED', 'remaining', #steps, 'created_ms', now,
  'steps', cjson.encode(ids))
for k, v in pairs(run) do redis.call('HSET', rh, k, v) end
emit(P, run_id, '', 0, 'QUEUED', '', now)
for _, s in ipairs(steps) do
  local member = run_id .. ':' .. s.step_id
  local sh = step_hash(P, member)
  redis.call('HSET', sh, 'state', 'PENDING', 'attempt', 0, 'priority', run.priority,
    'first', (#s.deps == 0) and '1' or '0', 'deps_left', #s.deps,
    'deps', cjson.encode(s.deps), 'dependents', cjson.encode(s.dependents))
  for k, v in pairs(s.fields) do redis.call('HSET', sh, k, v) end
  if #s.deps == 0 then
    enqueue(P, member, now)
    emit(P, run_id, s.step_id, 0, 'QUEUED', '', now)
  end
end
return {'created', run_id}
