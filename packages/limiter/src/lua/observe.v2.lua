--[[ observe.v2.lua (function tollgate_observe_v2_<hash>): lowers buckets to what the upstream says remains; never raises one.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  count          integer ≥ 0, number of (dimension, remaining) pairs that follow
  ARGV[3…] dimension, remaining   remaining a number ≥ 0; unknown dimensions are ignored
  Returns  {loweredCount, nowMs} | {-1, epoch}
]]
local function observe_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local lowered = 0
  local remaining = readCost(3, tonumber(ARGV[2]))
  for _, dim in ipairs(CFG.dims) do
    local value = remaining[dim]
    if value ~= nil and value < bucketTokens(dim) then
      setTokens(dim, value)
      lowered = lowered + 1
    end
  end
  return { lowered, NOW_MS }
end
redis.register_function('tollgate_observe_v2_{{hash}}', observe_v2)
