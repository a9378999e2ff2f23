"""The Dockerfile, read with Docker's own parser (the `dockerfile` package wraps
BuildKit's), and its build and run steps carried out without a Docker engine:
the build context as `.dockerignore` filters it (docker-py's implementation of
Docker's rules), each stage's WORKDIR, ENV, COPY and RUN executed in a folder
that stands for the stage's file system, the next stage's COPY --from taken
from there, and the final stage's CMD and HEALTHCHECK run as the image's user.

What an engine would add and this cannot: the base image itself (the host's
Debian Python 3.11 stands for python:3.11-slim-bookworm's), an isolated root
file system, namespaces and cgroups, and image layers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile
from docker.utils.build import exclude_paths

ROOT = Path(__file__).resolve().parent.parent
BASE_PYTHON = Path("/usr/bin/python3.11")  # stands for the base image's /usr/local/bin/python
MAPPED = ("app", "opt", "root")  # the top folders of the image the Dockerfile writes to
_ABSOLUTE = re.compile(r"(?<![\w./-])/(" + "|".join(MAPPED) + r")(?=/|\b)")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def instructions(path: Path = ROOT / "Dockerfile") -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(path))


@dataclass
class Stage:
    name: str
    base: str
    commands: list[dockerfile.Command] = field(default_factory=list)

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd]

    def last(self, cmd: str) -> dockerfile.Command | None:
        found = self.all(cmd)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """The stage's ENV, as written (pairs of name and value)."""
        values: dict[str, str] = {}
        for command in self.all("ENV"):
            values.update(zip(command.value[::2], command.value[1::2], strict=True))
        return values


def stages(commands: tuple[dockerfile.Command, ...] | None = None) -> list[Stage]:
    found: list[Stage] = []
    for command in commands or instructions():
        if command.cmd == "FROM":
            base, *rest = command.value
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else str(len(found))
            found.append(Stage(name, base))
        elif found:
            found[-1].commands.append(command)
    return found


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def context_files(root: Path = ROOT) -> set[str]:
    """What `docker build` would send from `root`: the paths .dockerignore lets through."""
    return {p for p in exclude_paths(str(root), ignore_patterns()) if (root / p).is_file()}


def copy_context(destination: Path, root: Path = ROOT) -> set[str]:
    """The build context, filtered, copied into `destination`."""
    files = context_files(root)
    for name in files:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, destination / name)
    return files


def _flag(command: dockerfile.Command, name: str) -> str | None:
    for flag in command.flags:
        if flag.startswith(f"--{name}="):
            return flag.split("=", 1)[1]
    return None


class Build:
    """Carries out the Dockerfile in `folder`: the stage being built lives in
    `folder/fs` (what is `/app`, `/opt`, `/root` in the image is there), a
    finished stage moves to `folder/stages/NAME`, and the final one stays in
    `folder/fs`. Paths keep their place from stage to stage, as in an image."""

    def __init__(self, folder: Path, context: Path, pip_cache: Path) -> None:
        self.folder = folder
        self.context = context
        self.pip_cache = pip_cache
        self.fs = folder / "fs"
        self.shims = folder / "base-image-bin"
        self.shims.mkdir(parents=True)
        (self.shims / "python").symlink_to(BASE_PYTHON)
        self.env: dict[str, str] = {}
        self.workdir = "/"
        self.user: str | None = None
        self.log: list[str] = []

    # -- paths of the image, in the folder --------------------------------------------

    def path(self, image_path: str) -> Path:
        """Where an absolute path of the image is on this machine."""
        absolute = image_path if image_path.startswith("/") else f"{self.workdir.rstrip('/')}/{image_path}"
        top = absolute.strip("/").split("/")[0]
        assert top in MAPPED or absolute == "/", f"the Dockerfile writes to {absolute}, outside {MAPPED}"
        return self.fs / absolute.lstrip("/")

    def rewrite(self, text: str) -> str:
        """A command line or value with the image's paths moved into the folder."""
        return _ABSOLUTE.sub(lambda m: f"{self.fs}/{m.group(1)}", text)

    def expand(self, text: str) -> str:
        return _VARIABLE.sub(lambda m: self.env.get(m.group(1) or m.group(2), ""), text)

    # -- the stages -------------------------------------------------------------------

    def run_all(self) -> Stage:
        found = stages()
        for index, stage in enumerate(found):
            self.fs.mkdir()
            # the base image's environment (python:3.11-slim-bookworm)
            self.env = {"PATH": f"{self.shims}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
            self.env["LANG"] = "C.UTF-8"
            self.workdir, self.user = "/", None
            for command in stage.commands:
                getattr(self, f"do_{command.cmd.lower()}", self.do_other)(command)
            if index < len(found) - 1:
                (self.folder / "stages").mkdir(exist_ok=True)
                self.fs.rename(self.folder / "stages" / stage.name)
        return found[-1]

    def do_workdir(self, command: dockerfile.Command) -> None:
        self.workdir = command.value[0]
        self.path(self.workdir).mkdir(parents=True, exist_ok=True)

    def do_env(self, command: dockerfile.Command) -> None:
        for name, value in zip(command.value[::2], command.value[1::2], strict=True):
            self.env[name] = self.rewrite(self.expand(value))

    def do_copy(self, command: dockerfile.Command) -> None:
        *sources, destination = command.value
        stage = _flag(command, "from")
        source_root = self.folder / "stages" / stage if stage else self.context
        target = self.path(destination)
        for source in sources:
            origin = source_root / source.lstrip("/")
            assert origin.exists(), (
                f"COPY {source}: not in the {'stage ' + stage if stage else 'build context'}"
            )
            if origin.is_dir():
                shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
            else:
                into_folder = destination.endswith("/") or len(sources) > 1
                (target if into_folder else target.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name if into_folder else target)
        owner = _flag(command, "chown")
        if owner:
            self._chown(target, owner)

    def do_run(self, command: dockerfile.Command) -> None:
        env = {**self.env, "HOME": str(self.path("/root"))}
        # what a build is given through its network: this machine's package index
        env |= {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
        user_config = Path.home() / ".config" / "pip" / "pip.conf"
        if user_config.exists():
            env["PIP_CONFIG_FILE"] = str(user_config)
        mount = _flag(command, "mount")
        if mount:
            options = dict(part.split("=", 1) for part in mount.split(","))
            assert options.get("type") == "cache", mount
            target = self.path(options["target"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(self.pip_cache)  # a cache mount outlives the build
        line = command.value[0] if not command.json else subprocess.list2cmdline(command.value)
        done = subprocess.run(
            ["/bin/sh", "-c", self.rewrite(line)],
            cwd=self.path(self.workdir),
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        self.log.append(f"RUN {line}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        assert done.returncode == 0, f"RUN {line} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if mount:
            target.unlink()  # not part of the image

    def do_user(self, command: dockerfile.Command) -> None:
        self.user = command.value[0]

    def do_other(self, command: dockerfile.Command) -> None:
        """EXPOSE, HEALTHCHECK, CMD: metadata of the image, read from the stage."""

    @staticmethod
    def _chown(path: Path, owner: str) -> None:
        uid, _, gid = owner.partition(":")
        for item in [path, *path.rglob("*")]:
            os.lchown(item, int(uid), int(gid or uid))

    def ids(self) -> tuple[int, int]:
        """The image's USER as numbers (the Dockerfile gives them as numbers)."""
        assert self.user is not None, "the image has no USER"
        uid, _, gid = self.user.partition(":")
        return int(uid), int(gid or uid)

    def runtime_env(self) -> dict[str, str]:
        """The final stage's environment, as a container starts with it."""
        return {**self.env, "HOME": "/"}
