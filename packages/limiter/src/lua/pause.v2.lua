--[[ pause.v2.lua (function tollgate_pause_v2_<hash>): a fleet-wide cool-down. Extends a pause, never shortens it.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  pauseMs        integer ≥ 0
  ARGV[3]  pool           string: '' pauses the whole account (every pool); a pool's name pauses that pool
                          only (a rate limit of one pool, e.g. its ITPM, never stops the others: DESIGN §9)
  Returns  {pausedUntilMs, nowMs} (the pause in force for what was paused) | {-1, epoch}
           | {-4, 'pool'} (not one of the config's pools)
]]
local function pause_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local untilMs, pool = NOW_MS + tonumber(ARGV[2]), ARGV[3]
  if pool ~= '' then
    if CFG.laneIndex[pool] == nil then return { -4, 'pool' } end
    local current = CFG.lanePausedUntil[pool]
    if untilMs > current then
      redis.call('HSET', K_CONFIG, 'pausedUntil@' .. pool, int(untilMs))
      current = untilMs
    end
    return { math.floor(current), NOW_MS }
  end
  if untilMs > CFG.pausedUntil then
    redis.call('HSET', K_CONFIG, 'pausedUntil', untilMs)
    CFG.pausedUntil = untilMs
  end
  return { math.floor(CFG.pausedUntil), NOW_MS }
end
redis.register_function('tollgate_pause_v2_{{hash}}', pause_v2)
