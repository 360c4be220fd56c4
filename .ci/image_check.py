"""Build the Dockerfile as it is and run the image the way it is deployed, without Docker.

There is no Docker engine and no container registry where CI runs. Debian's buildah and podman
build and run the unchanged Dockerfile as root with chroot isolation, so this script:

1. tools: installs buildah, podman, runc and debootstrap with apt-get when they are missing. If
   they cannot be had (not root, no apt-get, apt-get failing) it prints IMAGE CHECK SKIPPED in a
   banner and exits 0: the only way it exits 0 without having checked the image;
2. base: makes a stand-in for `python:3.11-slim-bookworm` (debootstrap minbase of bookworm from
   the host's apt mirror, Debian's Python 3.11, upgraded against bookworm-security), cached per
   ISO week under /var/cache/usersync-image-check, with podman's storage beside it;
3. build: `buildah bud --isolation chroot --pull=never --format docker --layers`, the host's CA
   bundle mounted into the RUN steps only (outbound TLS passes a proxy the host trusts);
4. runs the image on the host network as uid 10001 with a read-only root filesystem (a tmpfs on
   /tmp, as the Kubernetes Deployment's emptyDir), every capability dropped, no new privileges:
   `--help`, `migrate`, the emulator, `sync` and `status` against the host's Postgres (a fresh
   database per run, dropped after), `serve` answering /healthz and /readyz, the image's
   HEALTHCHECK (passing on serve, failing where nothing serves), SIGTERM of `serve` (exit 0) and
   of a `sync` waiting on the API (exit 143 within USERSYNC_SHUTDOWN_GRACE, the run recorded
   `aborted`), `migrate` from another working directory;
5. compose: runs deploy/compose.yaml's services that use the image (emulator, migrate, user-sync)
   with their own command, environment, hardening and health checks, in their dependency order,
   the host's Postgres standing in for the `postgres` service.

Exit 0: every check passed (or SKIPPED as above). Exit 1: a check failed, or the base or the
build could not be made. As root, from the repository: `.venv/bin/python .ci/image_check.py`.
Standard library only, except PyYAML (from the dev environment) to read compose.yaml.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("IMAGE_CHECK_CACHE", "/var/cache/usersync-image-check"))
ADMIN_URL = os.environ.get("IMAGE_CHECK_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
IMAGE = "localhost/conversations-user-sync:image-check"
BASE = "python:3.11-slim-bookworm"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# command: the Debian package that has it (psql creates and drops the databases of a run)
TOOLS = {
    "buildah": "buildah",
    "podman": "podman",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "psql": "postgresql-client",
}
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
UID = "10001:10001"
HARDENED = (
    "--network=host",
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs=/tmp:rw,mode=1777",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)
SHUTDOWN_GRACE = 6.0
COMPOSE_KEYS = frozenset(
    {"image", "build", "command", "environment", "ports", "healthcheck", "read_only", "tmpfs"}
    | {"cap_drop", "security_opt", "restart", "depends_on"}
)


class CheckFailed(Exception):
    """A check saw something other than what it expects; the message says what."""


class Skipped(Exception):
    """The tools cannot be had here: the check cannot run at all."""


def log(message: str) -> None:
    print(message, flush=True)


def run(
    command: Sequence[str], *, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure (with `check`) raises CheckFailed with its output."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    if check and done.returncode != 0:
        raise CheckFailed(f"`{' '.join(command)}` exited {done.returncode}:\n{tail(done)}")
    return done


def tail(done: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    text = (done.stdout or "") + (done.stderr or "")
    return "\n".join(text.strip().splitlines()[-lines:])


# 1. tools ------------------------------------------------------------------------------------


def missing_tools() -> list[str]:
    return [name for name in TOOLS if shutil.which(name) is None]


def install_tools() -> None:
    """apt-get install what is missing; Skipped when that is impossible here."""
    if os.geteuid() != 0:
        raise Skipped("not root: the image is built and run with rootful buildah and podman")
    missing = missing_tools()
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise Skipped(f"{', '.join(missing)} missing and no apt-get to install them")
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
        + [TOOLS[name] for name in missing],
    ):
        done = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=600, check=False, env=env
        )
        if done.returncode != 0:
            raise Skipped(f"`{' '.join(command)}` exited {done.returncode}:\n{tail(done)}")
    if missing_tools():
        raise Skipped(f"still missing after apt-get install: {', '.join(missing_tools())}")


def skipped_banner(reason: str) -> None:
    rule = "!" * 78
    log(f"\n{rule}\n!!! IMAGE CHECK SKIPPED: the image was NOT built or run.\n!!! {reason}")
    log(f"!!! Nothing about the Dockerfile is proven by this run.\n{rule}\n")


# 2. engine configuration and the base ---------------------------------------------------------


def configure_engine() -> None:
    """podman and buildah configured through their environment variables, not /etc: runc with
    cgroupfs (crun refuses the host's hybrid cgroups), rlimits the host allows, storage in the
    cache, no registry to search (nothing is pulled)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(4096, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    CACHE.mkdir(parents=True, exist_ok=True)
    files = {
        "containers.conf": (
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        ),
        "storage.conf": (
            '[storage]\ndriver = "overlay"\n'
            f'graphroot = "{CACHE / "storage"}"\nrunroot = "/run/usersync-image-check"\n'
        ),
        "registries.conf": "unqualified-search-registries = []\n",
    }
    for name, text in files.items():
        (CACHE / name).write_text(text, encoding="utf-8")
    os.environ["CONTAINERS_CONF"] = str(CACHE / "containers.conf")
    os.environ["CONTAINERS_STORAGE_CONF"] = str(CACHE / "storage.conf")
    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(CACHE / "registries.conf")


@dataclass(frozen=True)
class Mirrors:
    main: str
    security: str


def apt_sources() -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled `deb` source of the host, deb822 and one-line files."""
    found: list[tuple[str, list[str]]] = []
    directory = Path("/etc/apt/sources.list.d")
    for path in sorted(directory.glob("*.sources")):
        found += deb822_sources(path.read_text(encoding="utf-8"))
    for path in [Path("/etc/apt/sources.list"), *sorted(directory.glob("*.list"))]:
        if path.is_file():
            found += one_line_sources(path.read_text(encoding="utf-8"))
    return found


def deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for stanza in text.split("\n\n"):
        fields = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (
                line.partition(":") for line in stanza.splitlines() if not line.startswith("#")
            )
        )
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            found += [(uri, fields.get("suites", "").split()) for uri in fields["uris"].split()]
    return found


def one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()  # no [options]
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], [words[2]]))
    return found


def mirrors(sources: Sequence[tuple[str, list[str]]]) -> Mirrors:
    """The host's Debian mirror and security mirror (whatever release the host runs)."""
    main = [uri for uri, suites in sources if any("-" not in suite for suite in suites)]
    security = [uri for uri, suites in sources if any(s.endswith("-security") for s in suites)]
    if not main or not security:
        raise CheckFailed(f"no Debian mirror and security mirror in the apt sources: {sources}")
    return Mirrors(main=main[0].rstrip("/"), security=security[0].rstrip("/"))


def base_key(today: datetime.date) -> str:
    """The base is remade once an ISO week, to take in bookworm's security updates."""
    year, week, _ = today.isocalendar()
    return f"bookworm-{year}w{week:02d}"


def image_label(image: str, label: str) -> str | None:
    done = run(["podman", "image", "inspect", image], check=False)
    if done.returncode != 0:
        return None
    labels = json.loads(done.stdout)[0].get("Labels") or {}
    return labels.get(label)


def dockerfile_bases(text: str) -> set[str]:
    """The images the Dockerfile's stages start FROM (not other stages)."""
    froms = [line.split()[1:] for line in text.splitlines() if line.upper().startswith("FROM ")]
    stages = {words[2] for words in froms if len(words) == 3 and words[1].upper() == "AS"}
    return {words[0] for words in froms} - stages


def ensure_base() -> None:
    bases = dockerfile_bases((REPO / "Dockerfile").read_text(encoding="utf-8"))
    if bases != {BASE}:
        raise CheckFailed(f"the Dockerfile builds FROM {sorted(bases)}; the stand-in is {BASE}")
    key = base_key(datetime.datetime.now(datetime.UTC).date())
    if image_label(BASE, "usersync.image-check.base") == key:
        log(f"base: {BASE} from the cache ({key})")
        return
    archive = CACHE / f"base-{key}.tar"
    if not archive.exists():
        for old in CACHE.glob("base-*.tar"):
            old.unlink()
        make_base_archive(archive, mirrors(apt_sources()))
    run(
        [
            "podman", "import",
            "--change", f"ENV PATH={BASE_PATH}",
            "--change", "ENV LANG=C.UTF-8",
            "--change", f"LABEL usersync.image-check.base={key}",
            "--change", 'CMD ["python3"]',
            str(archive), BASE,
        ]
    )  # fmt: skip
    log(f"base: {BASE} imported ({key})")


def make_base_archive(archive: Path, source: Mirrors) -> None:
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    log(f"base: debootstrap bookworm from {source.main} (takes a minute or two)")
    run(
        ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm",
         str(rootfs), source.main],
        timeout=900,
    )  # fmt: skip
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {source.main} bookworm main\ndeb {source.main} bookworm-updates main\n"
        f"deb {source.security} bookworm-security main\n",
        encoding="utf-8",
    )
    shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    chroot = ["chroot", str(rootfs), "env", "DEBIAN_FRONTEND=noninteractive"]
    run([*chroot, "apt-get", "update", "-qq"], timeout=600)
    run([*chroot, "apt-get", "upgrade", "-y", "-qq"], timeout=600)
    run([*chroot, "apt-get", "clean"])
    for leftover in ("etc/resolv.conf", "var/lib/apt/lists"):
        path = rootfs / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    # python:3.11-slim has its interpreter and pip in /usr/local/bin; the Dockerfile calls them
    # by name, so Debian's are linked there.
    for name, target in [
        ("python", "python3"),
        ("python3", "python3"),
        ("python3.11", "python3.11"),
        ("pip", "pip3"),
        ("pip3", "pip3"),
    ]:
        (rootfs / "usr/local/bin" / name).symlink_to(f"/usr/bin/{target}")
    partial = archive.with_suffix(".partial")
    run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], timeout=600)
    partial.rename(archive)
    shutil.rmtree(rootfs)


# 3. build -------------------------------------------------------------------------------------


def build() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    git = run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=False)
    revision = git.stdout.strip() if git.returncode == 0 else "unknown"
    run(
        ["buildah", "bud", "--isolation", "chroot", "--pull=never", "--format", "docker",
         "--layers", "--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
         "--build-arg", f"VERSION={version}", "--build-arg", f"REVISION={revision}",
         "--tag", IMAGE, "--file", str(REPO / "Dockerfile"), str(REPO)],
        timeout=900,
    )  # fmt: skip
    # Untagged images of earlier builds, once a day old: the layers this build used (the
    # builder stage's included) are the next run's cache; the storage stays about 1 GB.
    run(["podman", "image", "prune", "--force", "--filter", "until=24h"], check=False)


# 4. running the image ----------------------------------------------------------------------


PREFIX = "usersync-check-"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover(name: str, prefix: str) -> bool:
    """A container or database of an earlier run of this check that was killed before it could
    clean up (its name carries the pid of a process that is gone)."""
    pid = name.removeprefix(prefix).split(prefix[-1], 1)[0]
    return name.startswith(prefix) and pid.isdigit() and not pid_alive(int(pid))


def reach_postgres() -> None:
    done = run(["psql", "-X", "-A", "-t", ADMIN_URL, "-c", "SELECT 1"], check=False, timeout=30)
    if done.returncode != 0:
        raise CheckFailed(
            f"no Postgres to create databases in at {ADMIN_URL} (set "
            f"IMAGE_CHECK_POSTGRES to another server's URL):\n{tail(done)}"
        )


def clean_leftovers() -> None:
    names = run(["podman", "ps", "--all", "--format", "{{.Names}}"], check=False).stdout.split()
    for name in [name for name in names if leftover(name, PREFIX)]:
        run(["podman", "rm", "--force", "--time", "0", name], check=False)
    databases = psql(ADMIN_URL, "SELECT datname FROM pg_database", check=False).split()
    for name in [name for name in databases if leftover(name, PREFIX.replace("-", "_"))]:
        psql(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)


@dataclass
class Run:
    """What this run created, so that it is all removed at the end, whatever happened."""

    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    containers: list[str] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    def name(self, role: str) -> str:
        name = f"{self.tag}-{role}"
        self.containers.append(name)
        return name

    def database(self, role: str) -> str:
        """A fresh database's name."""
        name = f"{self.tag}-{role}".replace("-", "_")
        psql(ADMIN_URL, f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return name

    def clean(self) -> None:
        for name in self.containers:
            run(["podman", "rm", "--force", "--time", "0", name], check=False)
        for name in self.databases:
            psql(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)


def database_url(name: str, *, host: str | None = None) -> str:
    parts = urllib.parse.urlsplit(ADMIN_URL)
    netloc = parts.netloc if host is None else parts.netloc.replace(parts.hostname or "", host)
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, f"/{name}", "sslmode=disable", "")
    )  # fmt: skip


def psql(url: str, sql: str, *, check: bool = True) -> str:
    done = run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=check
    )
    return done.stdout.strip()


def podman_run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    options: Sequence[str] = (*HARDENED, f"--user={UID}"),
    name: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The image with `command`; detached when named (the container is then left to stop)."""
    detach = ["--detach", f"--name={name}"] if name else ["--rm"]
    environment = [f"--env={key}={value}" for key, value in (env or {}).items()]
    return run(
        ["podman", "run", *detach, *options, *environment, IMAGE, *command],
        timeout=timeout,
        check=False,
    )


def expect_exit(done: subprocess.CompletedProcess[str], code: int, what: str) -> None:
    if done.returncode != code:
        raise CheckFailed(f"{what} exited {done.returncode}, expected {code}:\n{tail(done)}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server can listen on `port`: as the services do, with SO_REUSEADDR, so that
    connections of an earlier run still in TIME_WAIT do not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - the compose services bind all interfaces
        except OSError:
            return False
        return True


def http(url: str, *, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - our own URL
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw.strip() else None


def wait_for(what: str, ready: Callable[[], bool], *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, CheckFailed):
            if ready():
                return
        time.sleep(0.25)
    raise CheckFailed(f"{what}: not within {timeout:.0f} s")


def answers(url: str) -> Callable[[], bool]:
    return lambda: http(url)[0] == 200


def container_logs(name: str) -> str:
    return tail(run(["podman", "logs", name], check=False), lines=40)


def signal_and_wait(name: str, number: str, *, timeout: float = 40) -> tuple[int, float]:
    """Send signal `number` to the container's PID 1; its exit code and how long it took."""
    started = time.monotonic()
    run(["podman", "kill", "--signal", number, name])
    try:
        done = run(["podman", "wait", name], timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"{name} still running {timeout:.0f} s after SIG{number}:\n{container_logs(name)}"
        ) from None
    return int(done.stdout.strip().splitlines()[-1]), time.monotonic() - started


def health(name: str) -> int:
    return run(["podman", "healthcheck", "run", name], check=False, timeout=30).returncode


# The checks. Each takes the Context and raises CheckFailed; they run in order, and the first
# failure stops the run (later checks build on earlier ones: a database, a running emulator).


@dataclass
class Context:
    run: Run
    compose: dict[str, dict[str, Any]]
    api_env: dict[str, str] = field(default_factory=dict)
    database: str = ""
    emulator: str = ""
    emulator_url: str = ""

    def env(self, **more: str) -> dict[str, str]:
        return {"USERSYNC_DATABASE_URL": self.database, **self.api_env, **more}


def check_image_config(context: Context) -> None:
    image = json.loads(run(["podman", "image", "inspect", IMAGE]).stdout)[0]
    config = image["Config"]
    seen = {
        "User": config.get("User"),
        "Entrypoint": config.get("Entrypoint"),
        "Cmd": config.get("Cmd"),
        "Healthcheck": bool((image.get("Healthcheck") or {}).get("Test")),
    }
    wanted = {"User": UID, "Entrypoint": ["user-sync"], "Cmd": ["serve"], "Healthcheck": True}
    if seen != wanted:
        raise CheckFailed(f"image config {seen}, expected {wanted}")


def check_help(context: Context) -> None:
    done = podman_run(["--help"])
    expect_exit(done, 0, "--help")
    for command in ("serve", "migrate", "sync", "status", "emulator"):
        if command not in done.stdout:
            raise CheckFailed(f"--help does not mention {command}:\n{done.stdout}")


def check_migrate(context: Context) -> None:
    context.database = database_url(context.run.database("main"))
    expect_exit(podman_run(["migrate"], env=context.env()), 0, "migrate")
    if psql(context.database, "SELECT count(*) FROM alembic_version") != "1":
        raise CheckFailed("migrate exited 0 but left no alembic_version row")


def check_emulator(context: Context) -> None:
    port = free_port()
    context.emulator = context.run.name("emulator")
    context.emulator_url = f"http://127.0.0.1:{port}"
    # USERSYNC_HTTP_PORT points the image's HEALTHCHECK at a port nobody serves (next check).
    env = {"USERSYNC_HTTP_PORT": str(free_port())}
    started = podman_run(
        ["emulator", "--host", "127.0.0.1", "--port", str(port)], env=env, name=context.emulator
    )
    expect_exit(started, 0, "podman run emulator")
    wait_for("the emulator answering", answers(f"{context.emulator_url}/__emulator/stats"))
    context.api_env = {
        **compose_api_env(context.compose),
        "USERSYNC_API_BASE_URL": context.emulator_url,
    }


def check_healthcheck_fails_where_nothing_serves(context: Context) -> None:
    if health(context.emulator) == 0:
        raise CheckFailed("the HEALTHCHECK passed in a container where nothing serves /healthz")


def check_sync(context: Context) -> None:
    psql(
        context.database,
        "INSERT INTO internal_users (id, identity, friendly_name) VALUES "
        "('emp-1', 'ada@example.com', 'Ada'), ('emp-2', 'grace@example.com', 'Grace'), "
        "('emp-3', 'alan@example.com', 'Alan')",
    )
    done = podman_run(["sync", "--json"], env=context.env())
    expect_exit(done, 0, "sync")
    identities = remote_identities(context.emulator_url)
    wanted = {"ada@example.com", "grace@example.com", "alan@example.com"}
    if identities != wanted:
        raise CheckFailed(f"the emulator holds {sorted(identities)} after sync, not {wanted}")


def remote_identities(emulator_url: str) -> set[str]:
    _, state = http(f"{emulator_url}/__emulator/state")
    return {user["identity"] for service in state["services"] for user in service["users"]}


def check_status(context: Context) -> None:
    done = podman_run(["status", "--json"], env=context.env())
    expect_exit(done, 0, "status")
    if '"succeeded"' not in done.stdout:
        raise CheckFailed(f"status does not show the succeeded run:\n{done.stdout[:2000]}")


def check_serve(context: Context) -> None:
    port = free_port()
    name = context.run.name("serve")
    env = context.env(USERSYNC_HTTP_PORT=str(port), USERSYNC_API_TOKEN=secrets.token_hex(16))
    expect_exit(podman_run(["serve"], env=env, name=name), 0, "podman run serve")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("serve answering /healthz", answers(f"{base}/healthz"))
        wait_for("serve ready on /readyz", answers(f"{base}/readyz"))
    except CheckFailed as error:
        raise CheckFailed(f"{error}\n{container_logs(name)}") from None
    if (code := health(name)) != 0:
        raise CheckFailed(f"the image's HEALTHCHECK exited {code} on a serving container")
    code, seconds = signal_and_wait(name, "TERM")
    log(f"    serve: /healthz and /readyz 200, HEALTHCHECK healthy, SIGTERM -> exit {code} "
        f"in {seconds:.1f} s")  # fmt: skip
    if code != 0 or seconds > 30:
        raise CheckFailed(
            f"serve exited {code} {seconds:.1f} s after SIGTERM, expected 0 within 30 s"
        )


def check_sigterm_of_a_waiting_sync(context: Context) -> None:
    latency = {"kind": "latency", "seconds": 120, "operations": ["list_users"]}
    http(f"{context.emulator_url}/__emulator/faults", method="POST", body=latency)
    name = context.run.name("sync-waiting")
    env = context.env(USERSYNC_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE))
    expect_exit(podman_run(["sync", "--full"], env=env, name=name), 0, "podman run sync")
    wait_for("sync waiting on the API", lambda: listing_users(context), timeout=30)
    code, seconds = signal_and_wait(name, "TERM", timeout=SHUTDOWN_GRACE + 20)
    http(f"{context.emulator_url}/__emulator/faults", method="DELETE")
    recorded = psql(context.database, "SELECT status || ' / ' || coalesce(error, '') FROM sync_run "
                    "ORDER BY id DESC LIMIT 1")  # fmt: skip
    log(f"    sync waiting on the API: SIGTERM -> exit {code} in {seconds:.1f} s, run {recorded}")
    if code != 143 or seconds >= SHUTDOWN_GRACE or recorded != "aborted / stopped by SIGTERM":
        raise CheckFailed(
            f"expected exit 143 within {SHUTDOWN_GRACE} s and the run 'aborted / stopped by "
            f"SIGTERM'\n{container_logs(name)}"
        )


def listing_users(context: Context) -> bool:
    running = psql(context.database, "SELECT count(*) FROM sync_run WHERE status = 'running'")
    _, stats = http(f"{context.emulator_url}/__emulator/stats")
    return running == "1" and "list_users" in json.dumps(stats)


def check_migrate_elsewhere(context: Context) -> None:
    database = database_url(context.run.database("workdir"))
    options = (*HARDENED, f"--user={UID}", "--workdir=/usr")
    done = podman_run(["migrate"], env={"USERSYNC_DATABASE_URL": database}, options=options)
    expect_exit(done, 0, "migrate with the working directory /usr")
    if psql(database, "SELECT count(*) FROM alembic_version") != "1":
        raise CheckFailed("migrate from /usr exited 0 but left no alembic_version row")


# 5. compose ---------------------------------------------------------------------------------


def compose_services() -> dict[str, dict[str, Any]]:
    import yaml  # noqa: PLC0415 - the one import outside the standard library, for this file

    document = yaml.safe_load((REPO / "deploy/compose.yaml").read_text(encoding="utf-8"))
    return dict(document["services"])


def compose_api_env(services: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """The emulator's fake credentials and Service, as compose's user-sync service has them."""
    env = services["user-sync"]["environment"]
    keys = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "USERSYNC_SERVICE_SID")
    return {key: str(env[key]) for key in keys}


def uses_the_image(service: Mapping[str, Any]) -> bool:
    return "build" in service


def compose_order(services: Mapping[str, dict[str, Any]]) -> list[str]:
    """The services in an order that starts each after what it depends on."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dependency in services[name].get("depends_on", {}):
                visit(dependency)
            order.append(name)

    for name in services:
        visit(name)
    return order


def compose_options(
    service: Mapping[str, Any], *, database: str
) -> tuple[list[str], dict[str, str]]:
    """podman options and environment for one compose service on the host network: the other
    services' names resolve to 127.0.0.1, the database URL names a fresh database."""
    unknown = set(service) - COMPOSE_KEYS
    if unknown:
        raise CheckFailed(f"compose keys this check does not translate: {sorted(unknown)}")
    postgres = socket.gethostbyname(urllib.parse.urlsplit(ADMIN_URL).hostname or "127.0.0.1")
    options = [
        "--network=host",
        f"--add-host=postgres:{postgres}",
        "--add-host=emulator:127.0.0.1",
    ]
    if service.get("read_only"):
        options += ["--read-only", "--read-only-tmpfs=false"]
    options += [f"--tmpfs={path}" for path in service.get("tmpfs", [])]
    options += [f"--cap-drop={cap}" for cap in service.get("cap_drop", [])]
    options += [f"--security-opt={opt}" for opt in service.get("security_opt", [])]
    options += health_options(service.get("healthcheck"))
    env = {key: str(value) for key, value in service.get("environment", {}).items()}
    if "USERSYNC_DATABASE_URL" in env:
        env["USERSYNC_DATABASE_URL"] = database
    return options, env


def health_options(healthcheck: Mapping[str, Any] | None) -> list[str]:
    if not healthcheck:
        return []
    test = list(healthcheck["test"])
    if test[0] == "CMD":
        return [f"--health-cmd={json.dumps(test[1:])}"]
    if test[0] == "CMD-SHELL":
        return [f"--health-cmd={test[1]}"]
    raise CheckFailed(f"healthcheck test {test} is neither CMD nor CMD-SHELL")


def compose_ports(service: Mapping[str, Any]) -> list[int]:
    return [int(str(port).rsplit(":", 1)[-1]) for port in service.get("ports", [])]


def check_compose(context: Context) -> None:
    services = context.compose
    ours = [name for name in compose_order(services) if uses_the_image(services[name])]
    busy = [
        port for name in ours for port in compose_ports(services[name]) if not port_is_free(port)
    ]
    if busy:
        raise CheckFailed(f"compose's ports {busy} are taken on this host (host network)")
    database = database_url(context.run.database("compose"), host="postgres")
    started = []
    for name in ours:
        compose_service(name, services[name], database=database, context=context)
        started.append(name)
    for name in reversed(started):
        if services[name].get("restart") != "no":
            stop_compose_service(context.run.tag + "-compose-" + name)


def compose_service(
    name: str, service: Mapping[str, Any], *, database: str, context: Context
) -> None:
    options, env = compose_options(service, database=database)
    command = list(service["command"])
    if service.get("restart") == "no":
        expect_exit(
            podman_run(command, env=env, options=options, timeout=120), 0, f"compose {name}"
        )
        log(f"    compose {name}: {' '.join(command)} exited 0")
        return
    container = context.run.name("compose-" + name)
    expect_exit(podman_run(command, env=env, options=options, name=container), 0, f"compose {name}")
    try:
        wait_for(f"compose {name} healthy", lambda: health(container) == 0, timeout=90)
    except CheckFailed as error:
        raise CheckFailed(f"{error}\n{container_logs(container)}") from None
    log(f"    compose {name}: {' '.join(command)} healthy by its own healthcheck")


def stop_compose_service(container: str) -> None:
    code, seconds = signal_and_wait(container, "TERM")
    log(f"    {container}: SIGTERM -> exit {code} in {seconds:.1f} s")
    if code != 0:
        raise CheckFailed(f"{container} exited {code} after SIGTERM:\n{container_logs(container)}")


CHECKS: tuple[tuple[str, Callable[[Context], None]], ...] = (
    ("the image runs user-sync serve as 10001:10001 with a HEALTHCHECK", check_image_config),
    ("--help", check_help),
    ("migrate (a fresh database)", check_migrate),
    ("emulator from the image", check_emulator),
    ("HEALTHCHECK fails where nothing serves", check_healthcheck_fails_where_nothing_serves),
    ("sync against the emulator and Postgres", check_sync),
    ("status", check_status),
    ("serve: /healthz, /readyz, HEALTHCHECK, SIGTERM", check_serve),
    ("SIGTERM of a sync waiting on the API", check_sigterm_of_a_waiting_sync),
    ("migrate from another working directory", check_migrate_elsewhere),
    ("deploy/compose.yaml's services in the image", check_compose),
)


def run_checks(context: Context) -> None:
    for number, (title, check) in enumerate(CHECKS, start=1):
        started = time.monotonic()
        try:
            check(context)
        except CheckFailed as error:
            raise CheckFailed(f"check {number}/{len(CHECKS)} '{title}' FAILED: {error}") from None
        log(f"ok {number}/{len(CHECKS)} {title} ({time.monotonic() - started:.1f} s)")


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    started = time.monotonic()
    log(f"-- {name}")
    yield
    log(f"-- {name}: {time.monotonic() - started:.0f} s")


def main() -> int:
    started = time.monotonic()
    try:
        with stage("tools"):
            install_tools()
    except Skipped as reason:
        skipped_banner(str(reason))
        return 0
    configure_engine()
    # SIGTERM (a CI time limit) unwinds like an error, so that the containers and databases of
    # this run are removed.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    current = Run()
    try:
        reach_postgres()
        clean_leftovers()
        with stage("base"):
            ensure_base()
        with stage("build"):
            build()
        with stage("run"):
            run_checks(Context(run=current, compose=compose_services()))
    except (CheckFailed, subprocess.TimeoutExpired) as error:
        log(f"\nIMAGE CHECK FAILED: {error}")
        return 1
    finally:
        current.clean()
    log(f"image check passed: {len(CHECKS)} checks in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
