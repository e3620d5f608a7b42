"""What the switcher tells its operator in its log when an engine misbehaves (found by `make mutation`:
the rest of the suite checked what the switcher does, not what it says)."""

from __future__ import annotations

import logging

from standins.vllm_cluster import wait_until

AB = [{"name": "a"}, {"name": "b"}]


async def test_a_probe_that_gets_no_answer_is_logged_with_the_engine_and_the_reason(make_cluster, caplog):
    caplog.set_level(logging.DEBUG, logger="switcher")
    c = await make_cluster(AB, policy={"engine_probe_timeout_seconds": 0.3})
    c.engines["b"].faults.hang_status = True  # /is_sleeping never answers: a wedged engine
    url = c.manager.models["b"].engine.base_url
    expected = f"probe of b failed: GET {url}/is_sleeping: no answer within 0.3s"

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "switcher" and r.levelno == logging.DEBUG]

    await wait_until(lambda: expected in logged(), what="the failed probe of b in the log")
    # The other engine answers its probes: nothing is logged about it.
    assert not [line for line in logged() if line.startswith("probe of a")]
