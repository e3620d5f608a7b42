"""The body scan that finds `model` without parsing, and the byte budget for buffered bodies."""

from __future__ import annotations

import asyncio
import json

import pytest

from switcher.body import BodyError, ByteBudget, find_model, replace_span

FOUND = [
    (b'{"model": "m", "messages": []}', "m"),
    (b' \n{"messages": [{"role": "user", "content": "}]{["}], "model" : "m" }\n', "m"),
    (b'{"mod\\u0065l": "m"}', "m"),  # the engine decodes the key, so must we
    (b'{"model": "caf\\u00e9"}', "caf\u00e9"),
    (b'{"a": {"model": "nested"}, "model": "top"}', "top"),
    (b'{"a": "\\"model\\": \\"inside a string\\"", "model": "m"}', "m"),
    (b'{"x": [1, 2.5e3, true, null, [], {}], "model": "m"}', "m"),
]

REFUSED = [
    (b"", "JSON object"),
    (b"[1]", "JSON object"),
    (b"{not json", "not valid JSON"),
    (b'{"model": "m"', "not valid JSON"),
    (b'{"model": "m"}}', "not valid JSON"),
    (b'{"model": "m"} {"model": "n"}', "not valid JSON"),
    (b'{"model": "m"} "x"', "not valid JSON"),
    (b'{"messages": []}', "provide a `model`"),
    (b'{"model": 5}', "must be a string"),
    (b'{"model": null}', "must be a string"),
    (b'{"model": "m", "model": "n"}', "`model` twice"),
    (b'{"model": "m", "mod\\u0065l": "n"}', "`model` twice"),
    (b'{"model": "m", "x": ' + b"[" * 65 + b"]" * 65 + b"}", "deeper than 64"),
]


@pytest.mark.parametrize(("body", "model"), FOUND)
def test_finds_the_top_level_model(body, model):
    value, span = find_model(body, 64)
    assert value == model == json.loads(body)["model"]
    assert json.loads(body[span[0] : span[1]]) == model


@pytest.mark.parametrize(("body", "words"), REFUSED)
def test_refuses_what_the_switcher_cannot_route(body, words):
    with pytest.raises(BodyError) as caught:
        find_model(body, 64)
    assert caught.value.status == 400 and words in caught.value.message


def test_depth_bound_is_exact():
    ok = b'{"model": "m", "x": ' + b"[" * 63 + b"]" * 63 + b"}"  # 64 levels with the top object
    assert find_model(ok, 64)[0] == "m"
    with pytest.raises(BodyError):
        find_model(ok, 63)


def test_element_count_is_bounded_before_the_scan():
    many = b'{"model": "m", "x": [' + b'"a", ' * 200 + b'"b"]}'
    assert find_model(many, 64, max_elements=1000)[0] == "m"
    with pytest.raises(BodyError, match="more than 100 JSON strings"):
        find_model(many, 64, max_elements=100)
    # Brackets inside strings (a code prompt) are text, not elements.
    code = json.dumps({"model": "m", "prompt": "[{}]" * 1000}).encode()
    assert find_model(code, 64, max_elements=100)[0] == "m"


def test_alias_rewrite_changes_only_the_value():
    body = bytearray(b'{ "x" : 1.50e0 ,"model":"alias" , "y": "\\u00e9"}')
    _, span = find_model(body, 64)
    replace_span(body, span, 'org/Model "v2"')
    assert body == bytearray(b'{ "x" : 1.50e0 ,"model":"org/Model \\"v2\\"" , "y": "\\u00e9"}')
    assert json.loads(body)["model"] == 'org/Model "v2"'


async def test_byte_budget_is_fifo_and_survives_cancellation():
    budget = ByteBudget(10)
    await budget.acquire(6)
    big = asyncio.create_task(budget.acquire(8))
    small = asyncio.create_task(budget.acquire(2))
    await asyncio.sleep(0)
    assert not big.done() and not small.done()  # FIFO: the small one does not overtake
    big.cancel()
    await asyncio.wait_for(small, 1)  # the abandoned place in line passes to the next
    assert budget.used == 8
    budget.release(6)
    budget.release(2)
    assert budget.used == 0
