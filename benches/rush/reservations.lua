-- wrk script: a POST /reservations rush (contract Q), used by benches/rush/rush.sh.
--
-- Every request is POST /reservations {"userId","concertId","scheduleId","seatNumber"}
-- with the user's JWT, the user's active queue token and a unique Idempotency-Key.
--
-- Environment:
--   RUSH_USERS      file of "userId jwt queueToken" lines (required)
--   RUSH_MODE       "hot" (default): every request on RUSH_CONCERT/RUSH_HOT_SCHEDULE;
--                   "spread": a random schedule of RUSH_SCHEDULES
--   RUSH_CONCERT    concert id (default 1)
--   RUSH_HOT_SCHEDULE  schedule of the hot mode (default 1: the 50-seat demo schedule)
--   RUSH_SCHEDULES  spread mode: a file of schedule ids (one per line, or separated by
--                   spaces/commas), or the ids themselves ("7,8,9")
--   RUSH_SEATS      seats per schedule: a random seat 1..RUSH_SEATS (default 50)
--   RUSH_RUN        a run id put into every Idempotency-Key (default: time + random)
--   RUSH_MAX_REQUESTS  stop after about this many answers in all (each thread stops after
--                   its share); the cost per request grows with the requests already made
--                   (see rush.sh), so a fixed count compares builds at equal work
--
-- Request i of a thread t (of T threads) is the global number i*T+t and uses user
-- (i*T+t) mod N. done() prints the status counts summed over the threads, and two
-- machine-readable lines (RUSH_STATUS, RUSH_SUMMARY) that rush.sh reads.

local threads = {}

-- Wall clock in microseconds (LuaJIT's ffi; wrk is built on LuaJIT), or nil.
local now_us = nil
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_usec; } rush_timeval; int gettimeofday(rush_timeval *tv, void *tz);")
    local tv = ffi.new("rush_timeval")
    now_us = function()
      ffi.C.gettimeofday(tv, nil)
      return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
    end
  end
end
local thread_count = 0

local function split_words(s)
  local out = {}
  for w in string.gmatch(s, "[^%s,]+") do
    out[#out + 1] = w
  end
  return out
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs in the main Lua state once per thread, before the threads start.
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count - 1)
  threads[#threads + 1] = thread
end

-- Runs in each thread's own Lua state after setup(); every global below is per thread.
function init(args)
  nthreads = 0 + (os.getenv("RUSH_THREADS") or "0")
  if nthreads < 1 then
    nthreads = 1
  end
  local users_path = os.getenv("RUSH_USERS")
  if not users_path then
    error("RUSH_USERS (file of 'userId jwt queueToken' lines) is not set")
  end
  local text = read_file(users_path)
  if not text then
    error("cannot read RUSH_USERS file " .. users_path)
  end
  users = {}
  for line in string.gmatch(text, "[^\n]+") do
    local u, j, q = string.match(line, "^%s*(%d+)%s+(%S+)%s+(%S+)")
    if u then
      users[#users + 1] = {
        id = u,
        auth = "Bearer " .. j,
        queue = q,
      }
    end
  end
  if #users == 0 then
    error("no users in " .. users_path)
  end

  mode = os.getenv("RUSH_MODE") or "hot"
  concert = os.getenv("RUSH_CONCERT") or "1"
  seats = 0 + (os.getenv("RUSH_SEATS") or "50")
  schedules = {}
  if mode == "hot" then
    schedules[1] = os.getenv("RUSH_HOT_SCHEDULE") or "1"
  elseif mode == "spread" then
    local spec = os.getenv("RUSH_SCHEDULES") or ""
    local from_file = read_file(spec)
    schedules = split_words(from_file or spec)
    if #schedules == 0 then
      error("spread mode needs RUSH_SCHEDULES (a file of schedule ids or a list)")
    end
  else
    error("RUSH_MODE must be hot or spread, not " .. mode)
  end

  run = os.getenv("RUSH_RUN") or (tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9)))
  -- tid is set by setup() through thread:set before init runs.
  tid = tid or 0
  math.randomseed(os.time() * 1000 + tid * 7919 + #users)
  counter = 0
  answered = 0
  local max_total = 0 + (os.getenv("RUSH_MAX_REQUESTS") or "0")
  max_answers = 0
  if max_total > 0 then
    max_answers = math.ceil(max_total / nthreads)
  end
  counts = {}
  path = "/reservations"
  headers = {
    ["Content-Type"] = "application/json",
  }
end

function request()
  if now_us and not first_us then
    first_us = now_us()
  end
  local n = counter * nthreads + tid
  counter = counter + 1
  local u = users[(n % #users) + 1]
  local s = schedules[math.random(1, #schedules)]
  local seat = math.random(1, seats)
  headers["Authorization"] = u.auth
  headers["X-Queue-Token"] = u.queue
  headers["Idempotency-Key"] = "rush-" .. run .. "-" .. tid .. "-" .. counter
  local body = '{"userId":' .. u.id .. ',"concertId":' .. concert .. ',"scheduleId":' .. s
    .. ',"seatNumber":' .. seat .. '}'
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  answered = answered + 1
  if max_answers > 0 and answered >= max_answers then
    if now_us then
      last_us = now_us()
    end
    wrk.thread:stop()
  end
end

-- Runs in the main Lua state after the run.
function done(summary, latency, requests)
  local total = {}
  -- With RUSH_MAX_REQUESTS the threads stop early but wrk still waits the whole -d:
  -- the duration is then from the first request to the last thread's stop.
  local duration = summary.duration
  local t_first, t_last, stopped = nil, nil, 0
  for _, t in ipairs(threads) do
    local f, l = t:get("first_us"), t:get("last_us")
    if f and (not t_first or f < t_first) then t_first = f end
    if l then
      stopped = stopped + 1
      if not t_last or l > t_last then t_last = l end
    end
  end
  if stopped == #threads and t_first and t_last and t_last > t_first then
    duration = t_last - t_first
  end
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if c then
      for k, v in pairs(c) do
        total[k] = (total[k] or 0) + v
      end
    end
  end
  local keys = {}
  for k in pairs(total) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  io.write("status codes (summed over threads):\n")
  for _, k in ipairs(keys) do
    io.write(string.format("  %d: %d\n", k, total[k]))
    parts[#parts + 1] = string.format("%d=%d", k, total[k])
  end
  io.write("RUSH_STATUS " .. table.concat(parts, " ") .. "\n")
  local e = summary.errors
  io.write(string.format(
    "RUSH_SUMMARY requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
