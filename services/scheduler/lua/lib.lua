-- lib.lua: helpers prepended to every scheduler script (not a script of its own).
-- Key names follow services/scheduler/keys.py; P is the key prefix (ARGV[1]).

local function step_hash(P, member) return P .. 's:' .. member end
local function run_of(member) return string.match(member, '^([^:]+):') end
local function run_hash(P, run_id) return P .. 'r:' .. run_id end
local function events_key(P, run_id) return P .. 'e:' .. run_id end
local function queue_key(P, name) return P .. 'q:' .. name end
local function outputs_key(P, run_id) return P .. 'o:' .. run_id end
local function logs_key(P, member) return P .. 'l:' .. member end
local function idempotency_key(P, request_id) return P .. 'idem:' .. request_id end
local function leases_key(P) return P .. 'leases' end
local function delayed_key(P) return P .. 'delayed' end
local function held_key(P, run_id) return P .. 'h:' .. run_id end
local function fair_key(P) return P .. 'fair' end
local function unfinished_key(P) return P .. 'unfinished' end
local function deadlines_key(P) return P .. 'deadlines' end
local function rate_key(P, name) return P .. 'rate:' .. name end
local function places_key(P, name) return P .. 'places:' .. name end
local function place_waits_key(P, name) return P .. 'place-waits:' .. name end
local function place_limits_key(P) return P .. 'place-limits' end
local function task_limits_key(P) return P .. 'task-limits' end
local function signals_key(P) return P .. 'signals' end

-- Score: priority band (higher priority first; steps of runs in flight before first steps),
-- then, within a band, an order: for steps of runs in flight, enqueue time in ms; for first
-- steps (new work), a start tag that shares the fleet fairly between namespaces (below).
-- 2^42 is ~139 years of ms, so bands never overlap.
local BAND = 4398046511104

local function score(priority, now_ms)  -- a step of a run in flight
  return ((10 - tonumber(priority)) * 2) * BAND + tonumber(now_ms)
end

-- Fair share between namespaces (start-time fair queueing, one unit per first step): a
-- first step is tagged max(v, f) where v is the tag of the last first step leased in its
-- band (the fleet's virtual time) and f its namespace's next tag in the band, which then
-- moves on by one. Within a namespace that is arrival order; across namespaces, a team that
-- queued a backlog does not hold back another team's new runs: these take turns with it
-- from where the fleet is. A namespace that was idle comes back at v, with no credit.
-- A band's v starts at the time in ms of its first submit: tags start on the scale of the
-- enqueue times first steps were scored with before, so steps queued by an older scheduler
-- keep their place. A namespace's weight (services/scheduler/fair_shares.py) makes its
-- step cost 1/weight instead of 1 ('c:'..namespace, whole 32nds: exact in a double).
-- (P..'fair': 'v:'..band, 'f:'..band..':'..namespace and 'c:'..namespace.)
local function namespace_of(queue)
  return string.match(string.match(queue, '^[^|]*'), '^(.*)/[^/]*$') or 'default'
end

local function first_score(P, queue, priority, now_ms)
  local band = (10 - tonumber(priority)) * 2 + 1
  local namespace = namespace_of(queue)
  local next_field = 'f:' .. band .. ':' .. namespace
  local got = redis.call('HMGET', fair_key(P), 'v:' .. band, next_field, 'c:' .. namespace)
  if not got[1] then
    got[1] = now_ms
    redis.call('HSET', fair_key(P), 'v:' .. band, now_ms)
  end
  local tag = math.max(tonumber(got[1]), tonumber(got[2] or '0'))
  redis.call('HSET', fair_key(P), next_field, string.format('%.5f', tag + tonumber(got[3] or '1')))
  return band * BAND + tag
end

local function ready_score(P, queue, priority, first, now_ms)
  if first == '1' then return first_score(P, queue, priority, now_ms) end
  return score(priority, now_ms)
end

-- The first-step band of a leased step's score and its tag (nil for a step of a run in
-- flight), and the fleet's virtual time moved on to the highest tag leased.
local function first_tag(s)
  local band = math.floor(s / BAND)
  if band % 2 == 1 then return band, s - band * BAND end
end

local function advance_fair(P, band, tag)
  local current = tonumber(redis.call('HGET', fair_key(P), 'v:' .. band) or '0')
  if tag > current then redis.call('HSET', fair_key(P), 'v:' .. band, string.format('%.5f', tag)) end
end

local function emit(P, run_id, step_id, attempt, state, msg, now_ms, kind)
  return redis.call('XADD', events_key(P, run_id), '*', 'step', step_id or '',
    'attempt', tostring(attempt or 0), 'state', state, 'msg', msg or '', 't', tostring(now_ms),
    'kind', kind or 'STATE')
end

-- Every redis.call costs a few microseconds of its own (about 4 in valkey 9, measured), more
-- than most commands do: scripts read and write a hash with one call each where they can.

-- HSET of a Lua table {field = value, ...} in one call (nothing when it is empty).
local function hset_all(key, fields)
  local args = {}
  for k, v in pairs(fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

-- Queues a step whose queue, priority and first-ness the caller has read (HMGET queue,
-- priority, first); ``also`` is a flat list of more step fields to set in the same call.
local function enqueue_known(P, member, queue, priority, first, now_ms, also)
  redis.call('HSET', step_hash(P, member), 'state', 'QUEUED', 'queued_ms', now_ms,
    unpack(also or {}))
  redis.call('ZADD', queue_key(P, queue), ready_score(P, queue, priority, first, now_ms), member)
end

-- max_parallel_tasks: a run with a limit has at most that many steps QUEUED or RUNNING (a
-- retry waiting its due time counts). Ready steps beyond it stay PENDING in the run's held
-- set, in the order they became ready; the run hash counts its steps in flight ('active').
-- Queues held steps while the run has room (a rebuilt run's go to the delayed set until
-- not_before_ms); returns how many it queued, and appends to queued_on (a table, if given)
-- the queue of each step it put on one.
local function release_held(P, run_id, limit, now_ms, not_before_ms, queued_on)
  local rh = run_hash(P, run_id)
  local active = tonumber(redis.call('HGET', rh, 'active') or '0')
  local queued = 0
  while active < limit do
    local top = redis.call('ZPOPMIN', held_key(P, run_id))
    if #top == 0 then break end
    local member = top[1]
    local step_id = string.sub(member, #run_id + 2)
    if not_before_ms and not_before_ms > tonumber(now_ms) then
      redis.call('HSET', step_hash(P, member), 'state', 'QUEUED', 'queued_ms', now_ms)
      redis.call('ZADD', delayed_key(P), not_before_ms, member)
    else
      local d = redis.call('HMGET', step_hash(P, member), 'queue', 'priority', 'first')
      enqueue_known(P, member, d[1], d[2], d[3], now_ms)
      if queued_on then queued_on[#queued_on + 1] = d[1] end
    end
    emit(P, run_id, step_id, 0, 'QUEUED', '', now_ms)
    active = active + 1
    queued = queued + 1
  end
  redis.call('HSET', rh, 'active', active)
  return queued
end

-- Concurrency limits (task.json "concurrency_limit": at most N steps of a task running at
-- once in a namespace, over every executor and replica). A step of such a task carries
-- 'conc' (N) and 'conc_key' (its name, "<namespace>/<task_id>"); the steps holding one of
-- its N places are P..'places:'..name (step-key -> the lease id it holds the place with),
-- the steps that found none wait in P..'place-waits:'..name (step-key -> their queue
-- score), and P..'place-limits' names the tasks that have steps waiting (name -> N).
-- Each lease's end leaves its place (leave_place, wherever a script ends a lease), which
-- queues the first waiting step again; a holder whose lease is no longer its own is not
-- counted (places_taken) and promote_due.lua queues waiting steps while places are free,
-- so a place left without a word (a replica from before ended the lease) is not lost.

-- How many of a task's `limit` places are held: the holders, counted; only when they fill
-- every place, each is checked (still RUNNING on the lease it took the place with, else
-- dropped).
local function places_taken(P, name, limit)
  local key = places_key(P, name)
  local taken = redis.call('HLEN', key)
  if taken < limit then return taken end
  local held = redis.call('HGETALL', key)
  local live = 0
  for i = 1, #held, 2 do
    local s = redis.call('HMGET', step_hash(P, held[i]), 'state', 'lease')
    if s[1] == 'RUNNING' and s[2] == held[i + 1] then
      live = live + 1
    else
      redis.call('HDEL', key, held[i])
    end
  end
  return live
end

-- Queues again the first step waiting for one of a task's places (at the score it had);
-- returns its queue, or nil when none waits.
local function queue_place_waiter(P, name)
  local top = redis.call('ZPOPMIN', place_waits_key(P, name))
  if #top == 0 then
    redis.call('HDEL', place_limits_key(P), name)
    return nil
  end
  local queue = redis.call('HGET', step_hash(P, top[1]), 'queue')
  redis.call('ZADD', queue_key(P, queue), top[2], top[1])
  return queue
end

-- A step's lease ended (name: its 'conc_key', nil for a task without a limit): it leaves
-- its place, and the first step waiting for one is queued again. Returns that step's
-- queue, or nil.
local function leave_place(P, member, name)
  if not name then return nil end
  redis.call('HDEL', places_key(P, name), member)
  return queue_place_waiter(P, name)
end

-- Ends a run: sets its state, cancels every step that has not finished, and returns the
-- step-keys of cancelled steps that were RUNNING (their executors must be told to stop).
local function finish_run(P, run_id, state, err, now_ms, ttl)
  local rh = run_hash(P, run_id)
  local running = {}
  local r = redis.call('HMGET', rh, 'steps', 'max_parallel', 'namespace', 'deadline_ms')
  -- Runs unfinished per namespace (counted up by submit_run.lua), for RunLimits. A run
  -- queued before the count existed is not counted: its end does not take it below zero.
  if redis.call('HINCRBY', unfinished_key(P), r[3] or 'default', -1) < 0 then
    redis.call('HSET', unfinished_key(P), r[3] or 'default', 0)
  end
  if r[2] then redis.call('DEL', held_key(P, run_id)) end
  if r[4] then redis.call('ZREM', deadlines_key(P), run_id) end
  for _, step_id in ipairs(cjson.decode(r[1])) do
    local member = run_id .. ':' .. step_id
    local sh = step_hash(P, member)
    local f = redis.call('HMGET', sh, 'state', 'queue', 'executor', 'conc_key', 'awaiting')
    if f[1] == 'PENDING' or f[1] == 'QUEUED' or f[1] == 'RUNNING' then
      if f[5] then  -- it waited for a signal: no longer
        redis.call('ZREM', signals_key(P), member)
        redis.call('HDEL', sh, 'awaiting')
      end
      redis.call('ZREM', queue_key(P, f[2]), member)
      redis.call('ZREM', delayed_key(P), member)
      if f[4] and f[1] == 'QUEUED' then redis.call('ZREM', place_waits_key(P, f[4]), member) end
      if f[1] == 'RUNNING' then
        redis.call('ZREM', leases_key(P), member)
        leave_place(P, member, f[4])
        table.insert(running, member)
        table.insert(running, f[3] or '')
      end
      redis.call('HSET', sh, 'state', 'CANCELLED', 'ended_ms', now_ms, 'error', 'run ' .. state)
      emit(P, run_id, step_id, 0, 'CANCELLED', 'run ' .. state, now_ms)
    end
    redis.call('EXPIRE', sh, ttl)
  end
  redis.call('HSET', rh, 'state', state, 'ended_ms', now_ms, 'error', err or '')
  emit(P, run_id, '', 0, state, err or '', now_ms)
  for _, k in ipairs({rh, outputs_key(P, run_id), events_key(P, run_id)}) do
    redis.call('EXPIRE', k, ttl)
  end
  return running
end

-- A step attempt ended without output. Retries while attempts remain (if the failure is
-- retryable), else fails the step and the run. Returns {verdict, running-to-cancel...}.
local function fail_step(P, member, state, err, retryable, retry_at_ms, now_ms, ttl)
  local sh = step_hash(P, member)
  local run_id = run_of(member)
  local step_id = string.sub(member, #run_id + 2)
  local f = redis.call('HMGET', sh, 'attempt', 'max_retries', 'unheard', 'conc_key')
  local attempt, max_retries = tonumber(f[1]), tonumber(f[2])
  -- Attempts lost before their executor had them (expire_leases.lua) do not count.
  local counted = attempt - (tonumber(f[3] or '0') or 0)
  redis.call('ZREM', leases_key(P), member)
  leave_place(P, member, f[4])
  if retryable and counted <= max_retries then
    redis.call('HSET', sh, 'state', 'QUEUED', 'error', err, 'retry_at_ms', retry_at_ms)
    redis.call('ZADD', delayed_key(P), retry_at_ms, member)
    emit(P, run_id, step_id, attempt, 'QUEUED', 'retrying after: ' .. err, now_ms, 'RETRYING')
    return {'retrying'}
  end
  redis.call('HSET', sh, 'state', state, 'error', err, 'ended_ms', now_ms)
  emit(P, run_id, step_id, attempt, state, err, now_ms)
  local result = {'failed'}
  local why = 'step ' .. step_id .. ' ' .. state .. ': ' .. err
  -- A run ends as its failing step did: TIMED_OUT when that step ran out of time (its own
  -- timeout, or its lease: Temporal's heartbeat timeout), else FAILED.
  local run_state = (state == 'TIMED_OUT') and 'TIMED_OUT' or 'FAILED'
  for _, x in ipairs(finish_run(P, run_id, run_state, why, now_ms, ttl)) do
    table.insert(result, x)
  end
  return result
end

-- Conditions on upstream outputs: a pipeline step's skip_if that reads a step upstream of it
-- (its 'skip_on' field: JSON [{source, path, op, value, said}], services/common/
-- conditions.py's lua_fields), decided where the step becomes ready, with conditions.py's
-- semantics: a field the output lacks (or a source that has no output: it was skipped)
-- makes every condition but not_exists false; == compares JSON values strictly (true is not
-- 1; an empty list and an empty object, one Lua table each, are equal here); <, <=, >, >=
-- hold for two numbers or two strings.
local function json_same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= 'table' then return a == b end
  for k, v in pairs(a) do
    if b[k] == nil or not json_same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- Two strings in code point order, as Python orders them (Lua's '<' follows the server's
-- locale: strcoll). UTF-8's byte order is its code points' order.
local function text_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- What is at path (segments: a key, or an index from 0) in doc, or nil.
local function walk(doc, path)
  local found = doc
  if found == false then found = nil end  -- the source has no output
  for _, seg in ipairs(path) do
    if type(found) ~= 'table' then return nil end
    if type(seg) == 'number' then found = found[seg + 1] else found = found[seg] end
    if found == nil then return nil end
  end
  return found
end

local function condition_holds(c, doc)
  local found = walk(doc, c.path)
  local op, value = c.op, c.value
  if found == nil then return op == 'not_exists' end
  if op == 'exists' or op == 'not_exists' then return op == 'exists' end
  if op == '==' or op == '!=' then return json_same(found, value) == (op == '==') end
  if op == 'in' or op == 'not_in' then
    local any = false
    for _, v in ipairs(value) do
      if json_same(found, v) then any = true break end
    end
    return any == (op == 'in')
  end
  local kind = type(found)
  if kind ~= type(value) or (kind ~= 'number' and kind ~= 'string') then return false end
  local less, more = found < value, found > value
  if kind == 'string' then less, more = text_before(found, value), text_before(value, found) end
  if op == '<' then return less end
  if op == '<=' then return not more end
  if op == '>' then return more end
  return not less
end

-- The output of a step upstream ('': the run's input), decoded (false when it has none: it
-- was skipped), for a condition or a for_each to read; nil and why when it cannot be read
-- here. An output stored by reference (too large to go inline) is read through its view:
-- what is at the paths conditions and for_each lists read, which the executor sent with the
-- result (the source step's 'condition_view', conditions.view).
local function source_output(P, run_id, source)
  if source == '' then  -- the run's input (a for_each on a list there)
    return cjson.decode(redis.call('HGET', run_hash(P, run_id), 'input_json'))
  end
  local doc = redis.call('HGET', outputs_key(P, run_id), source)
  if not doc then return false end
  local ok, decoded = pcall(cjson.decode, doc)
  if not ok then return false end
  if type(decoded) == 'table' and type(decoded.wtm_ref) == 'string' then
    local seen = redis.call('HGET', step_hash(P, run_id .. ':' .. source), 'condition_view')
    if not seen then
      return nil, 'step ' .. source .. '\'s output is stored by reference (it is over the inline '
        .. 'limit), and no view of the fields read came with it (they are over the limit too, '
        .. 'or its executor is older)'
    end
    return cjson.decode(seen)
  end
  return decoded
end

-- Why the step is skipped ('skip_if <the condition>'), or '' to run it; nil and why when an
-- output it reads cannot be read here.
local function skip_on_reason(P, run_id, skip_on)
  local docs = {}
  for _, c in ipairs(cjson.decode(skip_on)) do
    local doc = docs[c.source]
    if doc == nil then
      local why
      doc, why = source_output(P, run_id, c.source)
      if doc == nil then return nil, 'skip_if ' .. c.said .. ': ' .. why end
      docs[c.source] = doc
    end
    if condition_holds(c, doc) then return 'skip_if ' .. c.said end
  end
  return ''
end

-- A ready step that awaits a signal (its 'signal' field, services/common/signals.py) and
-- has none yet waits for one: PENDING, its 'awaiting' the time its wait ends, which
-- P..'signals' (step-key -> that time) keeps for expire_signals.lua. It is not in flight:
-- a run's max_parallel counts it once signal.lua has made it ready. Its wait is timed from
-- now, or from 'await_from' (a run rebuilt after Redis lost it: when the wait began).
local function await_signal(P, run_id, step_id, spec, now_ms, from_ms)
  local wait = cjson.decode(spec)
  local since = tonumber(from_ms) or tonumber(now_ms)
  local due = since + wait.timeout_ms
  local member = run_id .. ':' .. step_id
  redis.call('HSET', step_hash(P, member), 'awaiting', due, 'await_ms', since)
  redis.call('ZADD', signals_key(P), due, member)
  emit(P, run_id, step_id, 0, 'PENDING', 'awaits a signal (' .. wait.field .. ') for up to '
    .. string.format('%d', wait.timeout_ms / 1000) .. ' s'
    .. (from_ms and ', as it did before the run was rebuilt' or ''), now_ms)
end

-- A step that is ready: waiting for a signal when it awaits one that has not come (d.signal
-- and not d.signaled), held when its run limits its steps in flight (max_parallel), put
-- aside until not_before_ms when that is to come (a rebuilt run), else queued, its queue
-- appended to queued_on.
local function make_ready(P, run_id, step_id, d, limit, now_ms, queued_on, not_before_ms)
  local member = run_id .. ':' .. step_id
  if d.signal and not d.signaled then
    await_signal(P, run_id, step_id, d.signal, now_ms, d.await_from)
  elseif limit > 0 then
    redis.call('ZADD', held_key(P, run_id), now_ms, member)
  elseif not_before_ms and not_before_ms > tonumber(now_ms) then
    redis.call('HSET', step_hash(P, member), 'state', 'QUEUED', 'queued_ms', now_ms)
    redis.call('ZADD', delayed_key(P), not_before_ms, member)
    emit(P, run_id, step_id, 0, 'QUEUED', '', now_ms)
  else
    enqueue_known(P, member, d.queue, d.priority, d.first, now_ms)
    emit(P, run_id, step_id, 0, 'QUEUED', '', now_ms)
    queued_on[#queued_on + 1] = d.queue
  end
end

-- A step whose wait for a signal is over — signalled (signal.lua), or run out under its
-- await_signal's on_timeout "continue" (expire_signals.lua): no longer waiting, and made
-- ready now (queued, or held under its run's max_parallel, limit). Returns the queues it
-- went on (none when held).
local function end_wait(P, run_id, step_id, limit, now_ms)
  local member = run_id .. ':' .. step_id
  local sh = step_hash(P, member)
  redis.call('HDEL', sh, 'awaiting')
  redis.call('ZREM', signals_key(P), member)
  local g = redis.call('HMGET', sh, 'queue', 'priority', 'first')
  local queued_on = {}
  make_ready(P, run_id, step_id, {queue = g[1], priority = g[2], first = g[3], signaled = true},
    limit, now_ms, queued_on)
  if limit > 0 then release_held(P, run_id, limit, now_ms, nil, queued_on) end
  return queued_on
end

-- A for_each step's last instance has completed: the step completes with the list of their
-- outputs, in the items' order (at most 4 MiB: a step output may be no larger inline), and
-- returns its dependents, to count it off. nil and why when the list is too large, or holds
-- an output stored by reference (a reference inside a list is read by no one).
local MAX_GATHERED = 4 * 1024 * 1024
local function gather(P, run_id, step_id, n, dependents, now_ms)
  local ids = {}
  for i = 0, n - 1 do ids[#ids + 1] = step_id .. '[' .. i .. ']' end
  local outs = redis.call('HMGET', outputs_key(P, run_id), unpack(ids))
  for i, o in ipairs(outs) do
    if string.sub(o, 1, 11) == '{"wtm_ref":' then  -- common/refs.py's make_ref
      return nil, 'for_each: ' .. ids[i] .. '\'s output is stored by reference (it is over the '
        .. 'inline limit), and a list of outputs cannot hold one; return an artifact\'s URI '
        .. 'instead'
    end
  end
  local output = '[' .. table.concat(outs, ',') .. ']'
  if #output > MAX_GATHERED then
    return nil, 'for_each: the outputs of its ' .. n .. ' instances make ' .. #output
      .. ' bytes, over the ' .. MAX_GATHERED .. ' a step output may be'
  end
  redis.call('HSET', outputs_key(P, run_id), step_id, output)
  redis.call('HSET', step_hash(P, run_id .. ':' .. step_id), 'state', 'COMPLETED', 'ended_ms',
    now_ms, 'error', '')
  emit(P, run_id, step_id, 0, 'COMPLETED', '', now_ms)
  redis.call('HINCRBY', run_hash(P, run_id), 'remaining', -1)
  return cjson.decode(dependents)
end

-- A for_each step (services/common/fan_out.py) becomes ready: one instance per item of the
-- list its source returned ('step[i]', a copy of the step with its 'item' and 'each', whose
-- only dependent is the step), each made ready, the run's step list (after the step) and
-- remaining count grown by them; the step waits RUNNING for them (its 'fanned': how many).
-- Instances a rebuilt run had completed (its 'done_items', history.fold_instances) are made
-- COMPLETED as they were. With none to run it completes at once (with [] for an empty list)
-- and returns its dependents, to count it off; else none. false when the source has no
-- output (it was skipped: so is this step); nil and why when the list cannot be read.
local MAX_ITEMS = 1024
local function fan_out(P, run_id, step_id, spec, limit, now_ms, queued_on, not_before_ms)
  local each = cjson.decode(spec)
  local doc, why = source_output(P, run_id, each.source)
  if doc == nil then return nil, 'for_each ' .. each.said .. ': ' .. why end
  if doc == false then return false end
  local list = walk(doc, each.path)
  if type(list) ~= 'table' or (next(list) ~= nil and list[1] == nil) then
    return nil, 'for_each ' .. each.said .. ': '
      .. (each.source == '' and 'the run\'s input has ' or ('step ' .. each.source .. ' returned '))
      .. (list == nil and 'no such field' or 'no list there')
  end
  local sh = step_hash(P, run_id .. ':' .. step_id)
  local rh = run_hash(P, run_id)
  local n = #list
  if n > MAX_ITEMS then
    return nil, 'for_each ' .. each.said .. ': ' .. n .. ' items, over the ' .. MAX_ITEMS
      .. ' a step may run'
  end
  if n == 0 then
    redis.call('HSET', outputs_key(P, run_id), step_id, '[]')
    redis.call('HSET', sh, 'state', 'COMPLETED', 'ended_ms', now_ms, 'fanned', 0)
    emit(P, run_id, step_id, 0, 'COMPLETED', 'for_each ' .. each.said .. ': no items', now_ms)
    redis.call('HINCRBY', rh, 'remaining', -1)
    return cjson.decode(redis.call('HGET', sh, 'dependents'))
  end
  local fields = redis.call('HGETALL', sh)
  local f = redis.call('HMGET', sh, 'queue', 'priority', 'first', 'input_id', 'output_id',
    'done_items', 'dependents')
  local given = f[6] and cjson.decode(f[6]) or {}  -- a rebuilt run's completed instances
  local steps, made, left = {}, {}, n
  for i = 0, n - 1 do
    local id = step_id .. '[' .. i .. ']'
    local ih = step_hash(P, run_id .. ':' .. id)
    redis.call('HSET', ih, unpack(fields))
    redis.call('HDEL', ih, 'for_each', 'skip_on', 'condition_paths', 'fanned', 'done_items')
    redis.call('HSET', ih, 'state', 'PENDING', 'deps_left', 0, 'dependents',
      cjson.encode({step_id}), 'item', i, 'each', spec,
      'input_id', f[4] .. string.format('_%04d', i), 'output_id', f[5] .. string.format('_%04d', i))
    made[#made + 1] = id
    local done = given[tostring(i)]
    if done then  -- as its record says, not run again
      hset_all(ih, done.fields)
      redis.call('HSET', ih, 'state', 'COMPLETED')
      redis.call('HSET', outputs_key(P, run_id), id, done.output)
      left = left - 1
    else
      make_ready(P, run_id, id, {queue = f[1], priority = f[2], first = f[3]}, limit, now_ms,
        queued_on, not_before_ms)
    end
  end
  for _, s in ipairs(cjson.decode(redis.call('HGET', rh, 'steps'))) do  -- after the step
    steps[#steps + 1] = s
    if s == step_id then
      for _, id in ipairs(made) do steps[#steps + 1] = id end
    end
  end
  redis.call('HSET', rh, 'steps', cjson.encode(steps))
  redis.call('HINCRBY', rh, 'remaining', left)
  redis.call('HSET', sh, 'state', 'RUNNING', 'started_ms', now_ms, 'fanned', n, 'deps_left', left)
  emit(P, run_id, step_id, 0, 'RUNNING', 'for_each ' .. each.said .. ': ' .. n .. ' items'
    .. (left < n and (', ' .. (n - left) .. ' done before') or ''), now_ms)
  if left == 0 then return gather(P, run_id, step_id, n, f[7], now_ms) end
  return {}
end

-- A step whose dependencies are done: unless it is PENDING still (a run's end cancelled it),
-- skipped (its skip_on held; returns its dependents, which count it off in turn), fanned out
-- (a for_each step) or made ready (returns none); a for_each step whose instances are all
-- done is gathered (returns its dependents). Returns nil and why when its conditions or its
-- list cannot be read.
local function ready_or_skipped(P, run_id, step_id, limit, now_ms, queued_on, not_before_ms)
  local sh = step_hash(P, run_id .. ':' .. step_id)
  local f = redis.call('HMGET', sh, 'state', 'queue', 'priority', 'first', 'skip_on', 'dependents',
    'for_each', 'fanned', 'signal', 'signal_json', 'await_from')
  if f[1] == 'RUNNING' and f[8] then
    return gather(P, run_id, step_id, tonumber(f[8]), f[6], now_ms)
  end
  if f[1] ~= 'PENDING' then return {} end
  local reason, why = '', nil
  if f[5] then reason, why = skip_on_reason(P, run_id, f[5]) end
  if reason == nil then return nil, why end
  if reason == '' and f[7] then
    local more
    more, why = fan_out(P, run_id, step_id, f[7], limit, now_ms, queued_on, not_before_ms)
    if more ~= false then return more, why end
    local each = cjson.decode(f[7])
    reason = 'for_each ' .. each.said .. ': step ' .. each.source .. ' was skipped'
  end
  if reason == '' then
    make_ready(P, run_id, step_id, {queue = f[2], priority = f[3], first = f[4], signal = f[9],
      signaled = f[10], await_from = f[11]}, limit, now_ms, queued_on, not_before_ms)
    return {}
  end
  redis.call('HSET', sh, 'state', 'SKIPPED', 'error', reason, 'ended_ms', now_ms)
  emit(P, run_id, step_id, 0, 'SKIPPED', reason, now_ms)
  redis.call('HINCRBY', run_hash(P, run_id), 'remaining', -1)
  return cjson.decode(f[6])
end

-- Steps whose dependency ended done (completed, or skipped): each counts it off, and one
-- left with none is skipped or made ready (ready_or_skipped), a skip counting off its own
-- dependents in turn. Returns nil, or the step whose conditions cannot be read and why.
local function count_down(P, run_id, dependents, limit, now_ms, queued_on, not_before_ms)
  local work, i = dependents, 1
  while i <= #work do
    local dep = work[i]
    i = i + 1
    if redis.call('HINCRBY', step_hash(P, run_id .. ':' .. dep), 'deps_left', -1) <= 0 then
      local more, why = ready_or_skipped(P, run_id, dep, limit, now_ms, queued_on, not_before_ms)
      if more == nil then return dep, why end
      for _, d in ipairs(more) do work[#work + 1] = d end
    end
  end
  return nil
end

-- A step whose conditions cannot be read fails, and its run with it.
local function fail_unreadable(P, run_id, step_id, why, now_ms, ttl)
  redis.call('HSET', step_hash(P, run_id .. ':' .. step_id), 'state', 'FAILED', 'error', why,
    'ended_ms', now_ms)
  emit(P, run_id, step_id, 0, 'FAILED', why, now_ms)
  return finish_run(P, run_id, 'FAILED', 'step ' .. step_id .. ' FAILED: ' .. why, now_ms, ttl)
end
