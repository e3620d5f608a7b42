"""The gateway stack for tests, all real parts but the engines and Prisma's native query engine:

    openai / anthropic SDK -> LiteLLM proxy (PyPI, .venv-litellm) -> switcher (switcher.app)
                                   |                                   -> vLLM stand-ins
                                   +-> PostgreSQL (Debian's), through the Prisma query-engine
                                       stand-in on Prisma's WebAssembly engine

LiteLLM runs with the config.yaml that ``playbooks/render.yml`` renders for the example inventory
(ConfigMap ``litellm-config``), with ``api_base`` pointed at the local switcher. The switcher serves the
catalog's models from stand-in engines: the first awake, the others asleep.

Fixture ``litellm_stack`` (one per pytest-xdist worker, shared by the gateway test files that run
there: each test makes its own keys and teams): ``.url``, ``.master_key``, ``.dsn``, ``.switcher_url``,
``.restart_litellm()``, ``.pg`` (``.psql(sql)``), ``.cluster`` (the switcher and its engines).
Without ``make setup-litellm`` these tests skip; ``K3SLLM_REQUIRE_GATEWAY=1`` (``make pytest``) makes
that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from k3sllm_testlib import REPO, session_folder
from k3sllm_testlib.gateway import (
    LiteLLM,
    Postgres,
    apply_migrations,
    litellm_missing,
    rendered_litellm_config,
    rendered_litellm_env,
    with_api_base,
)

from standins.vllm_cluster import Cluster, start_cluster
from switcher.app import Switcher, start_site
from switcher.config import parse_config

# Seconds for a module's first test: the renders (shared, minutes each), PostgreSQL, LiteLLM.
STACK_TIMEOUT = 2400


def require_litellm() -> None:
    reason = litellm_missing()
    if reason is None:
        return
    if os.environ.get("K3SLLM_REQUIRE_GATEWAY") == "1":
        pytest.fail(reason + " (K3SLLM_REQUIRE_GATEWAY=1)")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The module's stack starts inside its first test: give the gateway tests that time."""
    for item in items:
        if "litellm_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(STACK_TIMEOUT))


# ------------------------------------------------------------------------------ the render


def _manifests_conftest():
    """tests/manifests/conftest.py as a module: the render below must be the very one it makes, so the
    session renders each inventory once for both test folders (its folder is shared under a lock)."""
    name = "k3sllm_manifests_render"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "manifests" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def gateway_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example inventory's render folder (playbooks/render.yml), shared with tests/manifests.

    ``K3SLLM_GATEWAY_RENDER=<folder>`` reuses a render made earlier (development; the render takes
    minutes): ``ansible-playbook -i inventories/example playbooks/render.yml -e k3sllm_render_dir=<folder>``.
    """
    if os.environ.get("K3SLLM_GATEWAY_RENDER"):
        return Path(os.environ["K3SLLM_GATEWAY_RENDER"])
    manifests = _manifests_conftest()

    def render_all(base: Path) -> None:  # the same fill as tests/manifests' rendered_all
        for name, inventory in manifests.INVENTORIES.items():
            copy = base / name / "inventory"
            shutil.copytree(inventory, copy)
            manifests.render(copy, base / name / "rendered")

    return session_folder(tmp_path_factory, "rendered", render_all) / "example" / "rendered"


# ----------------------------------------------------------------------------- the switcher


class SwitcherThread:
    """The real switcher and its stand-in engines on an event loop of their own, so that tests can
    call them with blocking SDK clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="switcher", daemon=True)
        self.thread.start()
        self.cluster: Cluster | None = None
        self.runner: Any = None  # a switcher started with start_switcher
        self.url = ""

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, models: list[dict[str, Any]]) -> Cluster:
        """Stand-in engines for ``models`` and the switcher in front (standins.vllm_cluster)."""
        self.cluster = self.run(start_cluster(models))
        self.url = self.cluster.url
        return self.cluster

    def start_switcher(self, config: dict[str, Any]) -> str:
        """The switcher alone, with ``config`` (engines already running elsewhere); returns its URL."""

        async def start() -> Any:
            return await start_site(Switcher(parse_config(config)), "127.0.0.1", 0)

        self.runner = self.run(start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.url

    @contextlib.contextmanager
    def serving(self, config: dict[str, Any]) -> Iterator[None]:
        """Another switcher, with ``config``, on this one's address until the block ends; then the
        stand-in cluster's switcher again (a new one, with the same config and engines). LiteLLM's
        routes name the address, so the gateway in front keeps running: no second LiteLLM and
        database for a test that needs other engines behind it."""
        cluster = self.cluster
        assert cluster is not None, "serving() swaps the switcher of a stand-in cluster (start())"
        port = int(self.url.rsplit(":", 1)[1])

        async def swap(old_runner: Any, switcher: Switcher) -> Any:
            await old_runner.cleanup()
            return await start_site(switcher, "127.0.0.1", port)

        other = self.run(swap(cluster.runner, Switcher(parse_config(config))))
        try:
            yield
        finally:
            cluster.switcher = Switcher(cluster.switcher.config)
            cluster.runner = self.run(swap(other, cluster.switcher))

    def stop(self) -> None:
        if self.cluster is not None:
            self.run(self.cluster.close())
        if self.runner is not None:
            self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def catalog_models(config: dict) -> list[str]:
    """The switcher's model names, in catalog order, from the LiteLLM config's routes."""
    names: list[str] = []
    for entry in config["model_list"]:
        name = entry["litellm_params"]["model"].split("/", 1)[1]
        if name not in names:
            names.append(name)
    return names


# ------------------------------------------------------------------------------- the stack


@dataclass
class LiteLLMStack:
    litellm: LiteLLM
    pg: Postgres
    switcher: SwitcherThread
    config: dict  # the config LiteLLM runs with
    rendered_config: dict  # as render.yml wrote it

    @property
    def url(self) -> str:
        return self.litellm.url

    @property
    def master_key(self) -> str:
        return self.litellm.master_key

    @property
    def dsn(self) -> str:
        return self.pg.dsn

    @property
    def switcher_url(self) -> str:
        return self.switcher.url

    @property
    def cluster(self) -> Cluster:
        assert self.switcher.cluster is not None
        return self.switcher.cluster

    @property
    def models(self) -> list[str]:
        return catalog_models(self.config)

    def switcher_serving(self, config: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
        """The switcher behind LiteLLM runs ``config`` until the block ends (SwitcherThread.serving)."""
        return self.switcher.serving(config)

    def restart_litellm(self) -> None:
        """Stop LiteLLM and start it again against the same database."""
        self.litellm.restart()

    @contextlib.contextmanager
    def started_against(self, dsn: str) -> Iterator[LiteLLM]:
        """A second LiteLLM with the same config and master key on another database (``dsn``), stopped
        on leaving; it has ``.url`` and ``.master_key``."""
        folder = Path(tempfile.mkdtemp(prefix="k3sllm-litellm-", dir=self.litellm.folder))
        other = LiteLLM(
            self.litellm.config_path,
            dsn,
            folder,
            workers=self.litellm.workers,
            extra_env=self.litellm.extra_env,
        )
        try:
            other.start()
            yield other
        finally:
            other.stop()

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to LiteLLM's management API with the master key."""
        headers = {"Authorization": f"Bearer {self.master_key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def new_key(self, **settings: Any) -> str:
        """A virtual key (``/key/generate``) with the given settings; returns its value."""
        resp = self.admin("POST", "/key/generate", json=settings)
        assert resp.status_code == 200, resp.text
        return resp.json()["key"]


@contextlib.contextmanager
def gateway_stack(
    render_dir: Path, folder: Path, switcher_config: dict[str, Any] | None = None
) -> Iterator[LiteLLMStack]:
    """PostgreSQL with LiteLLM's migrations, a switcher, and LiteLLM with the rendered config.

    Without ``switcher_config`` the switcher serves the catalog's models from stand-in engines;
    with it, the switcher runs that config (engines the caller started).
    """
    require_litellm()
    rendered = rendered_litellm_config(render_dir)
    switcher = SwitcherThread()
    pg = None
    litellm = None
    try:
        if switcher_config is None:
            switcher.start([{"name": name} for name in catalog_models(rendered)])
        else:
            switcher.start_switcher(switcher_config)
        # The one change to the rendered config: the switcher is on this machine. Prices come from
        # the catalog (input/output_cost_per_million_tokens), as on a real host.
        config = with_api_base(rendered, switcher.url + "/v1")
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        pg = Postgres.start()
        apply_migrations(pg)
        litellm = LiteLLM(config_path, pg.dsn, folder, workers=1, extra_env=rendered_litellm_env(render_dir))
        litellm.start()
        yield LiteLLMStack(litellm, pg, switcher, config, rendered)
    finally:
        if litellm is not None:
            litellm.stop()
        if pg is not None:
            pg.stop()
        switcher.stop()


@pytest.fixture(scope="session")  # one per xdist worker: test_gateway, test_tenants and test_backup share it
def litellm_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiteLLMStack]:
    require_litellm()  # before the render, which takes minutes
    render_dir = request.getfixturevalue("gateway_render")
    with gateway_stack(render_dir, tmp_path_factory.mktemp("gateway")) as stack:
        yield stack
