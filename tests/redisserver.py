"""A throwaway Redis for the test session (Debian's `redis-server`; `make test`
installs it when missing), on a free loopback port, without persistence:
`redis_server` (stop() and start() it for outage tests) and `redis_url` (an
emptied Redis, running). Tests that need it skip when it is not installed."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis
from mailserver import free_port

BINARY = shutil.which("redis-server")


class RedisServer:
    """One redis-server process, stopped and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and return once it accepts connections (it says so on stdout)."""
        if self.process is not None:
            return
        command = [
            BINARY,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        command += ["--dir", str(self.folder), "--daemonize", "no", "--loglevel", "notice"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in self.process.stdout:
            seen.append(line)
            if "Ready to accept connections" in line:
                return
        raise RuntimeError("redis-server did not start:\n" + "".join(seen))

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.process = None


@pytest.fixture(scope="session")
def redis_server():
    if BINARY is None:
        pytest.skip("Redis is not installed (Debian package redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="portal-redis-"))
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session's Redis, running and empty."""
    redis_server.start()
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushall()
    connection.close()
    return redis_server.url
