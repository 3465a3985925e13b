-- submit_run.lua: create a run and its steps, and queue the steps that can start.
-- Also rebuilds a run that Redis lost: steps given with an output are COMPLETED already.
-- A step whose fields hold 'skip' (its skip_if held on the run's input: the reason) is
-- created SKIPPED: done, as a step with an output is, for its dependents and the run.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'idem:'..request_id   STRING  request id -> run id (read, written)
--   P..'r:'..run_id          HASH    the run (written)
--   P..'s:'..run_id..':'..s  HASH    each step (written)
--   P..'o:'..run_id          HASH    outputs of steps already completed (rebuild only)
--   P..'q:'..queue           ZSET    ready steps per queue (ZADD)
--   P..'delayed'             ZSET    ready steps held back until not_before_ms (rebuild)
--   P..'fair'                HASH    fair share of new work: virtual time, namespaces' tags
--   P..'h:'..run_id          ZSET    ready steps beyond the run's max_parallel (ZADD, ZPOPMIN)
--   P..'unfinished'          HASH    namespace -> its runs not finished (HINCRBY)
--   P..'deadlines'           ZSET    run id -> its deadline_ms, for a run with a time limit
--   P..'e:'..run_id          STREAM  run events (XADD)
-- A run field max_parallel (max_parallel_tasks) limits its steps in flight: see lib.lua.
-- ARGV: P, run_id, run fields JSON (flat object), steps JSON (list of {step_id, deps,
--       dependents, fields, [output], [attempt]}), now_ms, request_id, idem_ttl_s, finished_ttl_s,
--       not_before_ms (0, or when a rebuilt run's ready steps may start), note (a run
--       resuming another: its steps with an output were taken over, and this says so)
-- A ready step whose skip_if reads outputs (its 'skip_on': a rebuilt or resumed run's, given
-- with them, or one after steps skipped above), or that runs for each item of a list (its
-- 'for_each'), or that awaits a signal (its 'signal'), is decided after the others (lib.lua).
-- Returns: {'created', run_id}, {'created', run_id, 'ended'} when the run ended here (every
-- step skipped or given), or {'exists', existing_run_id}.
local P, run_id, now = ARGV[1], ARGV[2], ARGV[5]
local request_id, idem_ttl, ttl = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local not_before = tonumber(ARGV[9] or '0') or 0
local note = ARGV[10] or ''  -- '': steps with an output make this a rebuilt run
if request_id ~= '' then
  local existing = redis.call('GET', idempotency_key(P, request_id))
  if existing then return {'exists', existing} end
  redis.call('SET', idempotency_key(P, request_id), run_id, 'EX', idem_ttl)
end
local rh = run_hash(P, run_id)
if redis.call('EXISTS', rh) == 1 then return {'exists', run_id} end
local run = cjson.decode(ARGV[3])
local delayed_start = (tonumber(run.scheduled_ms or '0') or 0) >= not_before  -- not a rebuild's wait
local steps = cjson.decode(ARGV[4])
local ids, done, remaining, given = {}, {}, 0, 0
for _, s in ipairs(steps) do
  table.insert(ids, s.step_id)
  if s.output then
    done[s.step_id], given = true, given + 1
  elseif s.fields.skip then
    done[s.step_id] = true
  else
    remaining = remaining + 1
  end
end
local state = (given > 0 and note == '') and 'RUNNING' or 'QUEUED'
local limit = tonumber(run.max_parallel or '0') or 0
-- step id -> its group of a concurrency limit per input value (concurrency_groups.py)
local groups = run.conc_groups and cjson.decode(run.conc_groups)
local fields = {state = state, remaining = remaining, created_ms = now, steps = cjson.encode(ids)}
if limit > 0 then fields.active = 0 end
for k, v in pairs(run) do fields[k] = v end
hset_all(rh, fields)
redis.call('HINCRBY', unfinished_key(P), run.namespace or 'default', 1)
if run.deadline_ms then redis.call('ZADD', deadlines_key(P), run.deadline_ms, run_id) end
if note == '' and given > 0 then note = 'rebuilt' end
emit(P, run_id, '', 0, state, note, now)
local deciding = {}  -- ready steps with a skip_on, for_each or signal (lib.lua's ready_or_skipped)
for i, s in ipairs(steps) do
  local member = run_id .. ':' .. s.step_id
  local left = 0
  for _, d in ipairs(s.deps) do if not done[d] then left = left + 1 end end
  local first = (#s.deps == 0) and '1' or '0'
  local f = {state = 'PENDING', attempt = s.attempt or 0, priority = run.priority,
    first = first, deps_left = left, deps = cjson.encode(s.deps),
    dependents = cjson.encode(s.dependents)}
  for k, v in pairs(s.fields) do f[k] = v end
  if groups and groups[s.step_id] and f.conc_key then
    f.conc_key = f.conc_key .. '#' .. groups[s.step_id]
  end
  local ready = false
  if s.output then
    f.state = 'COMPLETED'
    redis.call('HSET', outputs_key(P, run_id), s.step_id, s.output)
    if f.cached_from and tonumber(f.attempt) == 0 then  -- taken over: never attempted here
      emit(P, run_id, s.step_id, 0, 'COMPLETED', 'taken over from ' .. f.cached_from, now)
    end
  elseif f.skip then
    f.state, f.error, f.ended_ms = 'SKIPPED', f.skip, now
    emit(P, run_id, s.step_id, 0, 'SKIPPED', f.skip, now)
  elseif left == 0 and (f.skip_on or f.for_each or f.signal) then  -- see ready_or_skipped
    deciding[#deciding + 1] = s.step_id
  elseif left == 0 then
    f.state, f.queued_ms, ready = 'QUEUED', now, true
  end
  if ready and limit > 0 then  -- queued by release_held below, while there is room
    f.state, f.queued_ms, ready = 'PENDING', nil, false
    redis.call('ZADD', held_key(P, run_id), i, member)
  end
  hset_all(step_hash(P, member), f)
  if ready and not_before > tonumber(now) then
    redis.call('ZADD', delayed_key(P), not_before, member)
    emit(P, run_id, s.step_id, 0, 'QUEUED', delayed_start and 'waits for the run\'s start time'
      or 'rebuilt: waits one lease period for lost attempts to stop', now)
  elseif ready then
    redis.call('ZADD', queue_key(P, f.queue), ready_score(P, f.queue, run.priority, first, now), member)
    emit(P, run_id, s.step_id, 0, 'QUEUED', '', now)
  end
end
local queued_on = {}
for _, step_id in ipairs(deciding) do
  local more, why = ready_or_skipped(P, run_id, step_id, limit, now, queued_on, not_before)
  local unreadable = step_id
  if more then unreadable, why = count_down(P, run_id, more, limit, now, queued_on, not_before) end
  if unreadable then
    fail_unreadable(P, run_id, unreadable, why, now, ttl)
    return {'created', run_id, 'ended'}
  end
end
if limit > 0 then release_held(P, run_id, limit, now, not_before) end
if #deciding > 0 then remaining = tonumber(redis.call('HGET', rh, 'remaining')) end
if remaining <= 0 then
  finish_run(P, run_id, 'COMPLETED', '', now, ttl)
  return {'created', run_id, 'ended'}
end
return {'created', run_id}
