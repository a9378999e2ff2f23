"""Steady-state scenarios driven by wrk (C, keep-alive, LuaJIT scripts), pinned
to the load core: one request per cycle, the way an RP's server or a browser
that is already signed in sends them.

Each scenario is a Lua script made from the parts below. Every response is
checked by the script (status and, where it matters, what it carries): a
response that is not what an RP needs counts as an error. Values that chain
(codes, tokens) pass between scenarios through files."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

COMMON = r"""
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
bad = 0
function lines(path)
  local out = {}
  local f = io.open(path, "r")
  if f == nil then return out end
  for line in f:lines() do if line ~= "" then table.insert(out, line) end end
  f:close()
  return out
end
function done(summary, latency, requests)
  local wrong = 0
  for _, t in ipairs(threads) do wrong = wrong + (t:get("bad") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"errors":%d,"wrong":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout, wrong))
end
"""

# SSO: a signed-in browser (a pool of session cookies) asks for a code for a
# second app, with no page; the codes are written out for the code exchange.
SSO = r"""
local cookies, i, out
function init(args)
  cookies = lines("{cookies}")
  i = id
  out = io.open("{codes}." .. id, "w")
end
function request()
  i = i + 1
  return wrk.format("GET", "{path}", {["Cookie"] = cookies[(i % #cookies) + 1]})
end
function response(status, headers, body)
  local code = status == 302 and (headers["Location"] or headers["location"] or ""):match("[?&]code=([^&]+)")
  if code then out:write(code, "\n") else bad = bad + 1 end
end
"""

# Code exchange: the app's server redeems each code once.
TOKEN = r"""
local codes, i, access, refresh, kept
function init(args)
  codes = lines("{codes}")
  i = id - 1
  access = io.open("{access}." .. id, "w")
  refresh = io.open("{refresh}." .. id, "w")
  kept = 0
end
function request()
  i = i + {threads}
  local code = codes[i] or "exhausted"
  return wrk.format("POST", "/token",
    {["Authorization"] = "{basic}", ["Content-Type"] = "application/x-www-form-urlencoded"},
    "grant_type=authorization_code&code=" .. code .. "&redirect_uri={redirect_uri}&code_verifier={verifier}")
end
function response(status, headers, body)
  local at = status == 200 and body:match('"access_token":%s*"([^"]+)"')
  local rt = body:match('"refresh_token":%s*"([^"]+)"')
  if not (at and rt and body:find('"id_token"')) then bad = bad + 1; return end
  if kept < 4000 then access:write(at, "\n"); refresh:write(rt, "\n"); kept = kept + 1 end
end
"""

# Refresh: chains of rotation; each new refresh token goes back to the pool.
REFRESH = r"""
local pool
function init(args)
  pool = {}
  local all = lines("{refresh}")
  for n = id, #all, {threads} do table.insert(pool, all[n]) end
end
function request()
  local rt = table.remove(pool, 1) or "exhausted"
  return wrk.format("POST", "/token",
    {["Authorization"] = "{basic}", ["Content-Type"] = "application/x-www-form-urlencoded"},
    "grant_type=refresh_token&refresh_token=" .. rt)
end
function response(status, headers, body)
  local rt = status == 200 and body:match('"refresh_token":%s*"([^"]+)"')
  if rt and body:find('"id_token"') then table.insert(pool, rt) else bad = bad + 1 end
end
"""

USERINFO = r"""
local tokens, i
function init(args) tokens = lines("{access}"); i = id end
function request()
  i = i + 1
  return wrk.format("GET", "/userinfo", {["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]})
end
function response(status, headers, body)
  if not (status == 200 and body:find('"sub"')) then bad = bad + 1 end
end
"""

INTROSPECT = r"""
local tokens, i
function init(args) tokens = lines("{access}"); i = id end
function request()
  i = i + 1
  return wrk.format("POST", "/introspect",
    {["Authorization"] = "{basic}", ["Content-Type"] = "application/x-www-form-urlencoded"},
    "token=" .. tokens[(i % #tokens) + 1])
end
function response(status, headers, body)
  if not (status == 200 and body:find('"active":%s*true')) then bad = bad + 1 end
end
"""

GET = r"""
function request() return wrk.format("GET", "{path}") end
function response(status, headers, body)
  if not (status == 200 and #body > 100) then bad = bad + 1 end
end
"""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(
    url: str,
    script: str,
    values: dict[str, str | int],
    *,
    seconds: int,
    connections: int,
    threads: int,
    cpu: str,
    folder: Path,
    name: str,
) -> Result:
    """Run wrk with COMMON + `script` (placeholders filled from `values`)."""
    text = script
    for key, value in {**values, "threads": threads}.items():
        text = text.replace("{" + key + "}", str(value))
    lua = folder / f"{name}.lua"
    lua.write_text(COMMON + text)
    done = subprocess.run(
        ["taskset", "-c", cpu, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line[len("BENCH ") :])
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"] + data["wrong"],
    )


def gather(prefix: Path) -> Path:
    """Join the per-thread files `prefix.1`, `prefix.2`… into `prefix`."""
    parts = sorted(prefix.parent.glob(prefix.name + ".*"))
    prefix.write_text("".join(p.read_text() for p in parts))
    for p in parts:
        p.unlink()
    return prefix
