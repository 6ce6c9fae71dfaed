--[[ resume.v1.lua (function tollgate_resume_v1_<hash>): ends a fleet-wide pause now (an operator's resume), then pumps so
  that the waiters it held are granted at once.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string
  ARGV[3]  pool           string: '' ends the account's pause and every pool's; a pool's name ends that
                          pool's only ('' when the client sends none)
  Returns  {pausedUntilMs before (0: was not paused; the latest of those ended), wakeAtMs, nowMs, {ownGrant…}}
           | {-1, epoch}
]]
local function resume_v1(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local before, pool = 0, ARGV[3] or ''
  if pool == '' and CFG.pausedUntil > NOW then
    before = math.floor(CFG.pausedUntil)
    redis.call('HSET', K_CONFIG, 'pausedUntil', 0)
    CFG.pausedUntil = 0
  end
  for _, lane in ipairs(CFG.lanes) do
    if (pool == '' or pool == lane) and CFG.lanePausedUntil[lane] > NOW then
      if CFG.lanePausedUntil[lane] > before then before = math.floor(CFG.lanePausedUntil[lane]) end
      redis.call('HSET', K_CONFIG, 'pausedUntil@' .. lane, '0')
      CFG.lanePausedUntil[lane] = 0
    end
  end
  local wake, own = pump(ARGV[2])
  return { before, wake, NOW_MS, own }
end
redis.register_function('tollgate_resume_v1_{{hash}}', resume_v1)
