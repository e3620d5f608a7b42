"""Every OpenAI route vLLM 0.32 serves reaches the right engine: the audio routes (the model is a
form field of a multipart body) and stored responses (no model in the request: the id says which
engine holds it). Clients are the official openai SDK."""

from __future__ import annotations

import openai
import pytest

from switcher.body import BodyError, find_form_model, replace_form_value

AB = [{"name": "a"}, {"name": "b", "aliases": ["b-alias"]}]
WAV = b"RIFF" + bytes(2000) + b"\r\n--not-the-boundary\r\n"  # audio bytes that look like a delimiter


def sdk(c) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=c.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("route", ["transcriptions", "translations"])
async def test_audio_routes_wake_the_model_named_in_the_form(make_cluster, route):
    c = await make_cluster(AB)  # a awake, b asleep
    api = getattr(sdk(c).audio, route)
    result = await api.create(model="b-alias", file=("speech.wav", WAV, "audio/wav"))
    assert result.text == f"[b] {len(WAV)} bytes of audio"  # the file arrived whole, b was woken
    assert c.state("b") == "awake" and c.engines["b"].stats.requests_while_sleeping == 0
    assert b'name="model"\r\n\r\nb\r\n' in c.engines["b"].last_raw_body  # the alias became the served name
    c.assert_gpu_safe()


async def test_audio_route_errors_are_openai_shaped(make_cluster):
    c = await make_cluster(AB)
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk(c).audio.transcriptions.create(model="nope", file=("s.wav", WAV, "audio/wav"))
    assert missing.value.body["code"] == "model_not_found"
    form = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="s.wav"\r\n\r\nRIFF\r\n--XX--\r\n'
    async with c.session.post(
        f"{c.url}/v1/audio/transcriptions",
        data=form,
        headers={"Content-Type": "multipart/form-data; boundary=XX"},
    ) as resp:
        body = await resp.json()
    assert (
        resp.status == 400 and body["error"]["code"] == "missing_model" and body["error"]["param"] == "model"
    )


async def test_a_stored_response_is_fetched_from_the_engine_that_made_it(make_cluster):
    c = await make_cluster(AB)
    client = sdk(c)
    made = await client.responses.create(model="b", input="hi")
    assert made.id.startswith("resp_") and made.model == "b"
    assert (await c.request("a")).model == "a"  # b is put to sleep
    assert c.state("b") == "sleeping"
    fetched = await client.responses.retrieve(made.id)  # b is woken for it, never sent while asleep
    assert (fetched.id, fetched.model, fetched.status) == (made.id, "b", "completed")
    cancelled = await client.responses.cancel(made.id)
    assert cancelled.status == "cancelled"
    assert c.engines["b"].stats.requests_while_sleeping == 0
    c.assert_gpu_safe()


async def test_an_unknown_response_id_is_an_openai_404(make_cluster):
    c = await make_cluster(AB)
    with pytest.raises(openai.NotFoundError) as unknown:
        await sdk(c).responses.retrieve("resp_0123456789abcdef")
    assert unknown.value.body["code"] == "response_not_found"
    assert c.engines["a"].stats.served == 0 and c.engines["b"].stats.served == 0
    assert c.metric("k3sllm_switcher_requests_total", model="_unknown", code="404") == 1


def test_form_model_is_found_between_parts_and_refused_when_ambiguous():
    def part(name: str, value: bytes) -> bytes:
        return (
            b'--B\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"
        )

    body = bytearray(part("file", b"--Bx\r\nnot a part") + part("model", b" whisper ") + b"--B--\r\n")
    name, span = find_form_model(body, 'multipart/form-data; boundary="B"')
    assert name == "whisper"
    replace_form_value(body, span, "served")
    assert find_form_model(body, "multipart/form-data; boundary=B")[0] == "served"
    with pytest.raises(BodyError, match="more than one"):
        find_form_model(
            part("model", b"x") + part("model", b"y") + b"--B--\r\n", "multipart/form-data; boundary=B"
        )
    with pytest.raises(BodyError, match="boundary"):
        find_form_model(body, "multipart/form-data")
    with pytest.raises(BodyError, match="not terminated"):
        find_form_model(part("model", b"x")[:-2], "multipart/form-data; boundary=B")
    with pytest.raises(BodyError, match="UTF-8"):
        find_form_model(part("model", b"\xff") + b"--B--\r\n", "multipart/form-data; boundary=B")
