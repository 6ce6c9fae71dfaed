--[[ resume.v1.lua (function tollgate_resume_v1_<hash>): ends a fleet-wide pause now (an operator's resume), then pumps so
  that the waiters it held are granted at once.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string
  Returns  {pausedUntilMs before (0: was not paused), wakeAtMs, nowMs, {ownGrant…}} | {-1, epoch}
]]
local function resume_v1(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local before = 0
  if CFG.pausedUntil > NOW then
    before = math.floor(CFG.pausedUntil)
    redis.call('HSET', K_CONFIG, 'pausedUntil', 0)
    CFG.pausedUntil = 0
  end
  local wake, own = pump(ARGV[2])
  return { before, wake, NOW_MS, own }
end
redis.register_function('tollgate_resume_v1_{{hash}}', resume_v1)
