"""The gateway's real parts on 127.0.0.1, for tests/gateway and bench/gateway.

- a throwaway PostgreSQL cluster (Debian's packages, ``initdb -A trust``), with LiteLLM's migrations
  applied by psql and recorded in ``_prisma_migrations`` as ``prisma migrate deploy`` would;
- the real LiteLLM proxy from ``.venv-litellm`` (scripts/setup-litellm.sh), its Prisma client served
  by the query-engine stand-in (tests/standins/prisma_engine) on Prisma's WebAssembly engine;
- the config.yaml that ``playbooks/render.yml`` renders (ConfigMap ``litellm-config``), with only
  ``api_base`` pointed at a local switcher.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from k3sllm_testlib import REPO, free_port

LITELLM_VENV = REPO / ".venv-litellm"
ENGINE_DIR = REPO / "tests" / "standins" / "prisma_engine"
READY_STAMPS = (LITELLM_VENV / ".k3sllm-ready", ENGINE_DIR / "node_modules" / ".k3sllm-ready")
LITELLM_START_TIMEOUT = 240  # seconds; importing the generated Prisma client alone takes 15-30 s here
MASTER_KEY = "sk-k3sllm-test-master-key"


def litellm_missing() -> str | None:
    """Why the real LiteLLM cannot run here, or None when scripts/setup-litellm.sh has prepared it."""
    missing = [str(p.relative_to(REPO)) for p in READY_STAMPS if not p.exists()]
    if missing:
        return f"LiteLLM not prepared ({', '.join(missing)} missing): run make setup-litellm"
    return None


def json_request(url: str, token: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    """Send ``body`` as JSON with ``token`` as the bearer; the status and the JSON answer, errors included."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    if not found:
        raise RuntimeError(
            f"{name} not found: install Debian's postgresql package (scripts/install-test-deps.sh)"
        )
    return found if isinstance(found, str) else found[0]


# ------------------------------------------------------------------------------------ PostgreSQL


@dataclass
class Postgres:
    """A private PostgreSQL cluster; ``dsn`` reaches database ``litellm`` as its owner ``litellm``."""

    folder: Path
    port: int
    user: str | None  # the unprivileged account the server runs as when we are root

    @property
    def dsn(self) -> str:
        return self.url("litellm")

    def url(self, database: str, user: str = "litellm") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "litellm", user: str = "postgres") -> str:
        """Run ``sql`` (stop at the first error) and return psql's unaligned, tuples-only output."""
        result = subprocess.run(
            [
                _pg_bin("psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                self.url(database, user),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else list(cmd)

    @classmethod
    def start(cls) -> Postgres:
        # initdb refuses to run as root: then the cluster belongs to Debian's `postgres` account, in a
        # folder of its own (pytest's temporary folders are private to root).
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
        folder = Path(tempfile.mkdtemp(prefix="k3sllm-pg-"))
        if user:
            shutil.chown(folder, user)
        pg = cls(folder, 0, user)
        subprocess.run(
            pg._as_owner(
                _pg_bin("initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "-D", str(folder / "data")
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        last_error = ""
        for _ in range(5):  # a port taken between choosing it and binding it: choose again
            pg.port = free_port()
            options = f"-h 127.0.0.1 -p {pg.port} -k {folder} -c fsync=off -c max_connections=200"
            started = subprocess.run(
                pg._as_owner(
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(folder / "data"),
                    "-o",
                    options,
                    "-l",
                    str(folder / "log"),
                    "-w",
                    "start",
                ),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if started.returncode == 0:
                pg.psql("CREATE ROLE litellm LOGIN", database="postgres")
                pg.psql("CREATE DATABASE litellm OWNER litellm", database="postgres")
                return pg
            last_error = (folder / "log").read_text(errors="replace")[-2000:]
        pg.stop()
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def stop(self) -> None:
        if (self.folder / "data" / "postmaster.pid").exists():
            subprocess.run(
                self._as_owner(_pg_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def migrations_dir() -> Path:
    """LiteLLM's migrations, as shipped in the litellm-proxy-extras package of .venv-litellm."""
    found = sorted(LITELLM_VENV.glob("lib/python*/site-packages/litellm_proxy_extras/migrations"))
    if not found:
        raise RuntimeError(f"litellm_proxy_extras not installed in {LITELLM_VENV}: run make setup-litellm")
    return found[0]


_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL, "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), "applied_steps_count" INTEGER NOT NULL DEFAULT 0);"""


def apply_migrations(pg: Postgres, database: str = "litellm") -> list[str]:
    """Apply LiteLLM's migrations not yet recorded in ``_prisma_migrations``; return their names.

    What ``prisma migrate deploy`` does, without Prisma's schema engine (no build of it runs here):
    each migration.sql in name order, then its row (name, sha256 checksum) in ``_prisma_migrations``.
    One psql session for all of them (6-15 s); some migrations build indexes CONCURRENTLY, so none is
    wrapped in a transaction here either.
    """
    pg.psql(_MIGRATIONS_TABLE, database=database, user="litellm")
    done = set(pg.psql('SELECT migration_name FROM "_prisma_migrations"', database=database).splitlines())
    todo = [p for p in sorted(migrations_dir().glob("*/migration.sql")) if p.parent.name not in done]
    if not todo:
        return []
    script = ["\\set ON_ERROR_STOP 1"]
    for path in todo:
        name = path.parent.name.replace("'", "''")
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        script.append("\\i '{}'".format(str(path).replace("'", "''")))
        script.append(
            'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, finished_at, applied_steps_count) '
            f"VALUES ('{uuid.uuid4()}', '{checksum}', '{name}', now(), 1);"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write("\n".join(script) + "\n")
    try:
        result = subprocess.run(
            [_pg_bin("psql"), "-X", "-q", pg.url(database), "-f", handle.name],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.unlink(handle.name)
    if result.returncode != 0:
        raise RuntimeError(f"LiteLLM migrations failed: {result.stderr[-3000:]}")
    return [p.parent.name for p in todo]


# --------------------------------------------------------------------------------- the config


def litellm_role_default(name: str):
    """A setting of roles/litellm as its defaults ship it (the tests and the bench run what users get)."""
    defaults = yaml.safe_load((REPO / "roles" / "litellm" / "defaults" / "main.yml").read_text())
    return defaults[name]


def rendered_litellm_config(render_dir: Path) -> dict:
    """config.yaml from the ConfigMap ``litellm-config`` that render.yml wrote under ``litellm/``."""
    for path in sorted((render_dir / "litellm").glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "litellm-config":
                return yaml.safe_load(doc["data"]["config.yaml"])
    raise AssertionError(f"no ConfigMap litellm-config rendered under {render_dir / 'litellm'}")


def rendered_litellm_env(render_dir: Path) -> dict[str, str]:
    """The literal environment of the rendered LiteLLM container (Secrets and paths left out)."""
    for path in sorted((render_dir / "litellm").glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                container = doc["spec"]["template"]["spec"]["containers"][0]
                return {
                    e["name"]: str(e["value"])
                    for e in container.get("env", [])
                    if "value" in e and not str(e["value"]).startswith("/")
                }
    return {}


def with_api_base(config: dict, api_base: str) -> dict:
    """The same config with every model sent to ``api_base`` instead of the in-cluster switcher."""
    copy = yaml.safe_load(yaml.safe_dump(config))
    for entry in copy["model_list"]:
        entry["litellm_params"]["api_base"] = api_base
    return copy


# ----------------------------------------------------------------------------------- LiteLLM


@dataclass
class LiteLLM:
    """The real LiteLLM proxy in a child process (own process group, so its workers stop with it)."""

    config_path: Path
    dsn: str
    folder: Path
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None
    master_key: str = MASTER_KEY
    starts: int = 0
    extra_args: tuple[str, ...] = ()
    start_timeout: float = LITELLM_START_TIMEOUT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / f"litellm-{self.starts}.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in [k for k in env if k.startswith(("LITELLM_", "PRISMA_", "OPENAI_", "ANTHROPIC_"))]:
            del env[key]
        prom = self.folder / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        env.update(self.extra_env)
        env.update(
            PATH=f"{LITELLM_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            LITELLM_MASTER_KEY=self.master_key,
            DATABASE_URL=self.dsn,
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            # Migrations are applied with psql (apply_migrations): there is no schema engine here.
            DISABLE_SCHEMA_UPDATE="true",
            PRISMA_QUERY_ENGINE_BINARY=str(ENGINE_DIR / "query-engine-standin.mjs"),
            PRISMA_SCHEMA_ENGINE_BINARY=str(ENGINE_DIR / "schema-engine-placeholder"),
            PRISMA_BINARY_CACHE_DIR=str(ENGINE_DIR),
            PRISMA_HIDE_UPDATE_MESSAGE="true",
            PROMETHEUS_MULTIPROC_DIR=str(prom),
            TMPDIR=str(self.folder),
            NO_PROXY="127.0.0.1,localhost",
        )
        return env

    def start(self) -> None:
        self.starts += 1
        self.port = free_port()
        with open(self.log_path, "w") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [
                    str(LITELLM_VENV / "bin" / "litellm"),
                    "--config",
                    str(self.config_path),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--num_workers",
                    str(self.workers),
                    *self.extra_args,
                ],
                cwd=self.folder,
                env=self.env(),
                # Its own stdin: the Prisma engine stand-in (Node.js) makes a shared one non-blocking,
                # and the playbooks these tests run next refuse to start on that.
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(self.start_timeout)

    def wait_ready(self, timeout: float = LITELLM_START_TIMEOUT) -> None:
        """Until /health/readiness answers with the database connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"LiteLLM exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                resp = httpx.get(self.url + "/health/readiness", timeout=5)
                if resp.status_code == 200 and resp.json().get("db") == "connected":
                    return
            time.sleep(0.5)
        raise RuntimeError(f"LiteLLM not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """Stop and start again against the same database (and the same config)."""
        self.stop()
        self.start()


@contextlib.contextmanager
def postgres_with_migrations() -> Iterator[Postgres]:
    pg = Postgres.start()
    try:
        apply_migrations(pg)
        yield pg
    finally:
        pg.stop()
