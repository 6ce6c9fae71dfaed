--[[ release.v2.lua (function tollgate_release_v2_<hash>): ends a lease, settles its tokens, and hands freed capacity to the head waiters.
  KEYS[1…6] the limiter's keys (prelude.lua)
  ARGV[1]  epoch          string
  ARGV[2]  ownerId        string, the calling process (its own grants come back in the reply)
  ARGV[3]  permitId       string
  ARGV[4]  maybeKept      '0' when the caller knows its grant is not in <p>:granted (the reply of its
                          own call granted it: its acquire, on the waiter's only submission, or its
                          own pump; that pump kept nothing), anything else ('1') when it may be (it
                          came by message, by heartbeat collection, or as a re-submission's answer):
                          then its copy there is deleted. A '0' only spares that HDEL.
  ARGV[5]  settleCount    integer ≥ 0, number of (dimension, reserved, used) triples that follow (left
                          off: 0)
  ARGV[6…] dimension, reserved, used   numbers ≥ 0; the bucket gets reserved − used back (capped at
                                       its capacity; a negative refund is a debt). Settled even when
                                       the lease had already expired, and exactly once: a second
                                       release of the same permit settles nothing.
  Returns  {leaseWasLive 0|1, wakeAtMs, nowMs, {ownGrant…}} | {-1, epoch}
           nowMs is 0 when the call read no clock: it reads TIME only when a bucket or a queued waiter
           needs it (then wakeAtMs may be > 0), so a release that finds nobody waiting in a limiter
           without rates runs one command fewer; wakeAtMs is 0 then
]]
local function release_v2(keys, args)
  local failure = begin(keys, args, true) -- no TIME unless a bucket or a waiter needs it
  if failure then return failure end

  local settleText = ARGV[5] or '0'
  local owner, permitId, settleCount = ARGV[2], ARGV[3], SMALL_INTEGER[settleText] or tonumber(settleText)
  local live = redis.call('ZREM', K_LEASES, permitId) -- 0: reclaimed after expiry (the client also
                                                       -- knows a lease it could not renew in time)
  if ARGV[4] ~= '0' then redis.call('HDEL', K_GRANTED, permitId) end
  -- settled once: a live lease, or one reclaimed unreleased; a second release (resent after a lost
  -- reply) finds it in neither and settles nothing
  if live == 1 or redis.call('ZREM', K_EXPIRED, permitId) == 1 then
    for i = 0, settleCount - 1 do
      refund(ARGV[6 + 3 * i], tonumber(ARGV[7 + 3 * i]) - tonumber(ARGV[8 + 3 * i]))
    end
  end
  local wake, own = pump(owner)
  return { live, wake, NOW_MS or 0, own } -- 0: no clock read (nobody waits, no bucket: wake is 0)
end
redis.register_function('tollgate_release_v2_{{hash}}', release_v2)
