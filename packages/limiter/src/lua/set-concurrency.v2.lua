--[[ set-concurrency.v2.lua (function tollgate_set_concurrency_v2_<hash>): sets the effective concurrency limit (adaptive control), clamped to
  1..configured, then pumps so that a raise lets waiters in at once.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string
  ARGV[3]  concurrency    integer ≥ 1
  Returns  {effective, wakeAtMs, nowMs, {ownGrant…}} | {-1, epoch}
]]
local function set_concurrency_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local effective = tonumber(ARGV[3])
  if effective > CFG.concurrency then effective = CFG.concurrency end
  if effective < 1 then effective = 1 end
  redis.call('HSET', K_CONFIG, 'effective', effective)
  CFG.effective = effective
  local wake, own = pump(ARGV[2])
  return { effective, wake, NOW_MS, own }
end
redis.register_function('tollgate_set_concurrency_v2_{{hash}}', set_concurrency_v2)
