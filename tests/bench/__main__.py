"""`make bench`: the provider's speed per core, over HTTP, against the real
server process, with the ceilings of that core measured in the same run.

The provider runs with the production command pinned to one core
(BENCH_SERVER_CPU, default 0); the load comes from another (BENCH_LOAD_CPU,
default 1): wrk for the steady-state scenarios, a small asyncio browser for
the sign-in through the pages. Concurrency 16, keep-alive. Prints one table,
writes it as JSON under bench-results/, and exits 1 when a target is missed.

    make bench                                  # SQLite (a fresh file)
    DATABASE_URL=postgresql+psycopg://… make bench   # a database the bench may fill
    BENCH_DB=postgres make bench                # a throwaway PostgreSQL cluster
    BENCH_QUICK=1 make bench                    # 1,000 sign-ins, 5 s scenarios (a smoke run)
    BENCH_PROFILE=1 make bench                  # and where each scenario's time goes (py-spy)
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import ceilings
import samples
import wrk
from client import Browser
from server import HOST, ROOT, Provider, provider, provision
from signin import App, FlowError, Person, sign_in

RESULTS = ROOT / "bench-results"
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "1")
QUICK = os.environ.get("BENCH_QUICK") == "1"
SECONDS = int(os.environ.get("BENCH_SECONDS", "5" if QUICK else "10"))
SIGNINS = int(os.environ.get("BENCH_SIGNINS", "1000" if QUICK else "10000"))
PEOPLE = int(os.environ.get("BENCH_PEOPLE", "2000" if QUICK else "4000"))
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
CONCURRENCY = 16
WORKERS = os.environ.get("WEB_WORKERS", "1")
# The production command; BENCH_COMMAND measures another (e.g. another server), with
# {port} and {workers} filled in.
COMMAND = shlex.split(
    os.environ.get("BENCH_COMMAND", f"{Path(sys.executable).parent / 'flask'} --app oidc_provider serve")
)

# scenario: (minimum per second, ceiling it is a fraction of)
TARGETS = {
    "sign-in (pages: password + TOTP)": (None, "argon2id_verify"),
    "SSO authorize (second app)": (2000, None),
    "code exchange (RS256 ID token)": (1000, "rs256_sign"),
    "refresh (rotation)": (1000, "rs256_sign"),
    "userinfo": (4000, None),
    "introspection": (4000, None),
    "discovery": (10000, None),
    "JWKS": (10000, None),
}
SIGNIN_CEILING_FRACTION = 0.8
P99_MS = 50
RSS_PER_WORKER_MIB = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def _signins(served: Provider, app: App, people: list[Person], total: int) -> dict:
    """`total` sign-ins by CONCURRENCY browsers at once, each a new browser (no cookies)."""
    queue = iter(range(total))
    durations: list[float] = []
    errors: list[str] = []
    kept_cookies: list[str] = []
    access: list[str] = []

    async def one_browser(slot: int) -> None:
        for n in queue:
            person = people[n % len(people)]  # one sign-in per person at a time
            browser = Browser(HOST, served.port)
            started = time.perf_counter()
            try:
                tokens = await sign_in(browser, person, app)
            except (FlowError, OSError, asyncio.IncompleteReadError) as exc:
                errors.append(str(exc)[:300])
            else:
                durations.append(time.perf_counter() - started)
                if len(kept_cookies) < 512:
                    kept_cookies.append(browser.cookie_header())
                    access.append(tokens["access_token"])
            finally:
                await browser.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_browser(i) for i in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "durations": durations, "errors": errors, "cookies": kept_cookies}


def _profile_file(name: str) -> Path:
    """py-spy's collapsed stacks of the last profiled run, kept for a flame graph."""
    (RESULTS / "profiles").mkdir(parents=True, exist_ok=True)
    return RESULTS / "profiles" / f"{name}.txt"


def _profile(served: Provider, name: str) -> samples.Recording | None:
    """With BENCH_PROFILE=1, py-spy on the (first) worker for the scenario about to run."""
    if not PROFILE:
        return None
    workers = sorted(served.rss_mib()["workers"])
    return samples.Recording(workers[0], _profile_file(name), LOAD_CPU)


def _more_codes(served: Provider, values: dict, common: dict, work: Path) -> None:
    """As many codes again, unmeasured: the code exchange may be faster than the
    SSO authorize that makes its codes, and a code is redeemed once."""
    more = work / "more-codes"
    wrk.run(
        served.url,
        wrk.SSO,
        {**common, **values, "codes": more},
        seconds=SECONDS,
        connections=CONCURRENCY,
        threads=1,
        cpu=LOAD_CPU,
        folder=work,
        name="sso-more",
    )
    wrk.gather(more)
    with (work / "codes").open("a") as codes:
        codes.write(more.read_text())


def _pin_load_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(LOAD_CPU)})


def _database(stack: ExitStack, folder: Path) -> tuple[str, str]:
    if os.environ.get("BENCH_DB") == "postgres":
        sys.path.insert(0, str(ROOT / "tests"))
        from pgserver import throwaway_cluster

        return stack.enter_context(throwaway_cluster()), "postgresql (throwaway cluster)"
    if os.environ.get("DATABASE_URL"):
        url = os.environ["DATABASE_URL"]
        return url, url.split("://")[0]
    return f"sqlite:///{folder / 'bench.sqlite3'}", "sqlite"


def _row(name: str, rate: float, p50: float, p99: float, errors: int, ceilings_: dict[str, float]) -> dict:
    target, ceiling = TARGETS[name]
    fraction = rate / ceilings_[ceiling] if ceiling else None
    if target is None:
        ok = fraction is not None and fraction >= SIGNIN_CEILING_FRACTION and errors == 0
    else:
        ok = rate >= target and errors == 0 and p99 < P99_MS
    return {
        "scenario": name,
        "rate_per_s": round(rate, 1),
        "target_per_s": target if target is not None else f"≥ {SIGNIN_CEILING_FRACTION} × argon2id",
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "errors": errors,
        "fraction_of_ceiling": round(fraction, 3) if fraction is not None else None,
        "ok": ok,
    }


def _print_table(rows: list[dict], ceilings_: dict[str, float], rss: dict, database: str) -> None:
    print()
    print(f"Login Portal, one core (cpu {SERVER_CPU}), load from cpu {LOAD_CPU}, concurrency {CONCURRENCY}, {database}")
    print(f"ceilings: argon2id verify {ceilings_['argon2id_verify']:.1f}/s, RS256 sign {ceilings_['rs256_sign']:.0f}/s")
    header = (
        f"{'scenario':36} {'rate/s':>9} {'target':>12} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'of ceiling':>10} {'cpu µs/req':>10}  verdict"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        fraction = f"{r['fraction_of_ceiling']:.2f}" if r["fraction_of_ceiling"] is not None else ""
        target = r["target_per_s"] if isinstance(r["target_per_s"], str) else f"≥ {r['target_per_s']}"
        print(
            f"{r['scenario']:36} {r['rate_per_s']:9.1f} {target:>12} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['errors']:7d} {fraction:>10} {r.get('server_cpu_us_per_request', 0):>10}  {'ok' if r['ok'] else 'MISSED'}"
        )
    print(
        f"{'memory (RSS, MiB)':36} before {rss['before_max_worker']:.0f} per worker, after {SIGNINS} sign-ins "
        f"{rss['after_max_worker']:.0f} per worker (limit {RSS_PER_WORKER_MIB}), all processes {rss['after_total']:.0f}"
        f"  {'ok' if rss['ok'] else 'MISSED'}"
    )
    profiled = [r for r in rows if r.get("profile")]
    if profiled:
        print("\nwhere the server's time goes (py-spy, share of busy samples):")
        for r in profiled:
            print(f"  {r['scenario']:36} {samples.line(r['profile'])}")


def main() -> int:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (Debian: apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'})")
            return 2
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portal-bench-")))
        database_url, database = _database(stack, folder)
        print(f"ceilings on cpu {SERVER_CPU}…", flush=True)
        measured = ceilings.measure(SERVER_CPU)
        port = free_port()
        command = [part.format(port=port, workers=WORKERS) for part in COMMAND]
        served = stack.enter_context(
            provider(folder / "provider", port, database_url, command, SERVER_CPU, WEB_WORKERS=WORKERS)
        )
        app_a, app_b = served.apps
        people = provision(served, PEOPLE)
        _pin_load_core()
        rss_before = served.rss_mib()
        print(f"sign-in through the pages: {SIGNINS} sign-ins…", flush=True)
        cpu_before = served.cpu_seconds()
        recording = _profile(served, "sign-in")
        signins = asyncio.run(_signins(served, app_a, people, SIGNINS))
        signin_cpu = served.cpu_seconds() - cpu_before
        signin_profile = recording.stop() if recording else None
        rss_after = served.rss_mib()
        if signins["errors"]:
            print("  sign-in errors, first:", signins["errors"][:3])
        durations_ms = sorted(d * 1000 for d in signins["durations"]) or [0.0]
        rows = [
            _row(
                "sign-in (pages: password + TOTP)",
                len(signins["durations"]) / signins["elapsed"],
                statistics.median(durations_ms),
                durations_ms[int(len(durations_ms) * 0.99) - 1 if len(durations_ms) > 1 else 0],
                len(signins["errors"]),
                measured,
            )
        ]
        rows[0]["server_cpu_us_per_request"] = round(signin_cpu * 1e6 / max(1, len(signins["durations"])))
        if signin_profile is not None:
            rows[0]["profile"] = signin_profile
        work = folder / "wrk"
        work.mkdir()
        cookies = work / "cookies"
        cookies.write_text("\n".join(signins["cookies"]) + "\n")
        common = {"basic": app_b.basic(), "redirect_uri": app_b.redirect_uri, "verifier": app_b.verifier}
        steps = [
            ("SSO authorize (second app)", wrk.SSO, {"cookies": cookies, "codes": work / "codes", "path": app_b.authorize_path()}),
            ("code exchange (RS256 ID token)", wrk.TOKEN, {"codes": work / "codes", "access": work / "access", "refresh": work / "refresh"}),
            ("refresh (rotation)", wrk.REFRESH, {"refresh": work / "refresh"}),
            ("userinfo", wrk.USERINFO, {"access": work / "access"}),
            ("introspection", wrk.INTROSPECT, {"access": work / "access"}),
            ("discovery", wrk.GET, {"path": "/.well-known/openid-configuration"}),
            ("JWKS", wrk.GET, {"path": "/jwks.json"}),
        ]
        for name, script, values in steps:
            print(f"{name}: {SECONDS} s…", flush=True)
            cpu_before = served.cpu_seconds()
            recording = _profile(served, name.split()[0].lower())
            result = wrk.run(
                served.url,
                script,
                {**common, **values},
                seconds=SECONDS,
                connections=CONCURRENCY,
                threads=1,
                cpu=LOAD_CPU,
                folder=work,
                name=name.split()[0].lower(),
            )
            for produced in ("codes", "access", "refresh"):
                if any(work.glob(f"{produced}.*")):
                    wrk.gather(work / produced)
            cpu = served.cpu_seconds() - cpu_before
            rows.append(_row(name, result.rate, result.p50_ms, result.p99_ms, result.errors, measured))
            rows[-1]["server_cpu_us_per_request"] = round(cpu * 1e6 / max(1, result.requests))
            if recording:
                rows[-1]["profile"] = recording.stop()
            if script is wrk.SSO:
                _more_codes(served, values, common, work)
        rss = {
            "before_max_worker": max(rss_before["workers"].values()),
            "after_max_worker": max(rss_after["workers"].values()),
            "after_total": rss_after["total"],
            "workers": len(rss_after["workers"]),
        }
        rss["ok"] = rss["after_max_worker"] <= RSS_PER_WORKER_MIB
        _print_table(rows, measured, rss, database)
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS / f"{stamp}-{database.split()[0]}.json"
        out.write_text(
            json.dumps(
                {
                    "when": stamp,
                    "database": database,
                    "workers": WORKERS,
                    "concurrency": CONCURRENCY,
                    "seconds": SECONDS,
                    "signins": SIGNINS,
                    "ceilings_per_s": measured,
                    "scenarios": rows,
                    "rss_mib": rss,
                },
                indent=2,
            )
        )
        print(f"\nwritten to {out.relative_to(ROOT)}")
        return 0 if all(r["ok"] for r in rows) and rss["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
