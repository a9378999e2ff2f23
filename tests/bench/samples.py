"""Where a scenario's time goes: py-spy samples the server's worker while the
load runs (BENCH_PROFILE=1), and the samples are sorted into the parts a
request passes through, so the table's rate can be read against them.

Only the thread holding the GIL is sampled (`--gil`): that is the Python work
of the one core. Work done with the GIL released (argon2id hashing, part of
the RSA signature, the database file's I/O) is the difference between the
table's server CPU per request and this; threads waiting for the GIL or a
lock are not counted as work."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE = 250  # samples per second

# the first matching part wins, checked from the innermost frame outwards:
# a sample inside cryptography called by Authlib counts as signing
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("argon2id", ("argon2/", "_argon2")),
    ("RSA sign", ("cryptography/", "joserfc/", "authlib/jose/")),
    ("database driver", ("sqlite3/", "psycopg/", "psycopg_binary", "_sqlite3")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("Authlib (protocol)", ("authlib/",)),
    ("templates (Jinja)", ("jinja2/",)),
    ("forms, CSRF", ("wtforms/", "flask_wtf/")),
    ("rate limits", ("flask_limiter/", "limits/")),
    ("Flask, Werkzeug", ("flask/", "werkzeug/")),
    ("portal code", ("oidc_provider/",)),
    ("server (granian)", ("granian/",)),
)


def available() -> bool:
    return Path(_py_spy()).exists() or shutil.which("py-spy") is not None


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


class Recording:
    """py-spy sampling the worker `pid` from `cpu` without pausing it, until `stop`."""

    def __init__(self, pid: int, output: Path, cpu: str) -> None:
        self.output = output
        self.process = subprocess.Popen(
            ["taskset", "-c", cpu, _py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--gil",
             "--nonblocking", "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, float]:
        """End the sampling (py-spy writes its file on SIGINT) and return the shares."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return {}
        return parts(self.output) if self.output.exists() else {}


def parts(collapsed: Path) -> dict[str, float]:
    """Share of the samples per part, from py-spy's collapsed stacks
    ("frame;frame;… count" per line, outermost frame first). Idle samples
    (the worker waiting for a request) are left out."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = stack.split(";")
        counts[_part(frames)] += int(number)
    busy = sum(n for part, n in counts.items() if part != "idle")
    return {part: round(n / busy, 3) for part, n in counts.most_common() if part != "idle" and busy}


def _part(frames: list[str]) -> str:
    innermost = frames[-1]
    if not innermost.strip():  # a thread of the server's own (Rust) runtime
        return "idle"
    for frame in reversed(frames):
        for part, markers in PARTS:
            if any(marker in frame for marker in markers):
                return part
    return "other"


def line(shares: dict[str, float], top: int = 5) -> str:
    return ", ".join(f"{part} {share:.0%}" for part, share in list(shares.items())[:top])
