"""The embedded model, for real: no key, no network."""

from convo.llm.local_gguf import embedded_model_path


def test_embedded_model_ships_in_a_package():
    path = embedded_model_path()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_embedded_model_answers_with_counted_tokens_and_no_cost(api, fake_upstream):
    before = len(fake_upstream.requests)
    thread = api.thread(model="smollm2-135m-instruct", temperature=0)
    stream = api.send(thread["id"], "Say hello in one short sentence.", max_tokens=24)
    assert stream.last.event == "done", stream.last
    assert len(stream.of("delta")) >= 2, "the answer arrives token by token"
    assert stream.text.strip()
    usage = stream.of("usage")[0].data
    assert 0 < usage["completion_tokens"] <= 24
    assert usage["prompt_tokens"] > len("Say hello in one short sentence.".split())
    assert usage["cost_usd"] == 0
    assert len(fake_upstream.requests) == before, "nothing went over the network"
