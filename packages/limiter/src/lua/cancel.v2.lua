--[[ cancel.v2.lua (function tollgate_cancel_v2_<hash>): a waiter leaves the queue (abort, timeout). If it was granted in the meantime,
  that grant is released here with its whole cost refunded (nothing was sent on it).
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string
  ARGV[3]  waiterId       string
  ARGV[4]  member         string, the queue entry acquire returned ('' if it never got one)
  ARGV[5]  costCount      integer ≥ 0, number of (dimension, amount) pairs that follow
  ARGV[6…] dimension, amount
  Returns  {state, wakeAtMs, nowMs, {ownGrant…}}  state 0 = was not there, 1 = left the queue,
                                                  2 = was granted and is now released
           {-1, epoch}
]]
local function cancel_v2(keys, args)
  local failure = begin(keys, args)
  if failure then return failure end

  local owner, waiterId, member = ARGV[2], ARGV[3], ARGV[4]
  local state = 0
  if member ~= '' and redis.call('ZREM', K_WAITING, member) == 1 then
    state = 1
  elseif redis.call('ZREM', K_LEASES, waiterId) == 1 then
    redis.call('HDEL', K_GRANTED, waiterId)
    leasesChanged()
    local cost = readCost(6, tonumber(ARGV[5]))
    for dim, amount in pairs(cost) do refund(dim, amount) end -- the pool's buckets and its group's budgets
    state = 2
  end
  local wake, own = pump(owner)
  return { state, wake, NOW_MS, own }
end
redis.register_function('tollgate_cancel_v2_{{hash}}', cancel_v2)
