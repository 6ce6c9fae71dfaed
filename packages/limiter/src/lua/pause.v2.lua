--[[ pause.v2.lua (function tollgate_pause_v2_<hash>): a fleet-wide cool-down. Extends a pause, never shortens it.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  pauseMs        integer ≥ 0
  Returns  {pausedUntilMs, nowMs} | {-1, epoch}
]]
local function pause_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local untilMs = NOW_MS + tonumber(ARGV[2])
  if untilMs > CFG.pausedUntil then
    redis.call('HSET', K_CONFIG, 'pausedUntil', untilMs)
    CFG.pausedUntil = untilMs
  end
  return { math.floor(CFG.pausedUntil), NOW_MS }
end
redis.register_function('tollgate_pause_v2_{{hash}}', pause_v2)
