-- queue_stats.lua: per queue, how many steps wait and when the oldest of them was queued.
-- Read-only. A queue's score is band * 2^42 + enqueue ms (lib.lua's score), so the oldest
-- step is the earliest among the first members of each non-empty band: one ZRANGE per band
-- that holds work, jumping from band to band, not a walk over the queue.
-- KEYS: none declared; derived from the prefix P = ARGV[1] (see services/scheduler/keys.py):
--   P..'q:'..queue           ZSET    ready steps (ZCARD, ZRANGE BYSCORE LIMIT 1)
-- ARGV: P, queue...
-- Returns: per queue, {depth, earliest enqueue ms or -1 when empty}.
local P = ARGV[1]
local BAND = 4398046511104
local out = {}
for i = 2, #ARGV do
  local key = queue_key(P, ARGV[i])
  local depth = redis.call('ZCARD', key)
  local oldest = -1
  local from = '-inf'
  local seen = 0
  while seen < depth do
    local first = redis.call('ZRANGE', key, from, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
    if #first == 0 then break end
    local s = tonumber(first[2])
    local band = math.floor(s / BAND)
    local ms = s - band * BAND
    if oldest < 0 or ms < oldest then oldest = ms end
    from = string.format('%.0f', (band + 1) * BAND)
    seen = seen + redis.call('ZCOUNT', key, string.format('%.0f', band * BAND), '(' .. from)
  end
  out[#out + 1] = {depth, oldest}
end
return out
