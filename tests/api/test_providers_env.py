"""Providers configured by plain environment variables, without a providers file."""


def test_openai_and_anthropic_from_the_environment(sqlite_server, fake_upstream):
    sqlite_server.stop()
    env = sqlite_server.env
    for key in ("CONVO_PROVIDERS_FILE", "CONVO_DEFAULT_MODEL"):
        env.pop(key)
    env.update(OPENAI_BASE_URL=fake_upstream.base_url, OPENAI_API_KEY="sk-env",
               ANTHROPIC_API_KEY="sk-ant-env", ANTHROPIC_BASE_URL=fake_upstream.anthropic_url)
    sqlite_server.start()
    api = sqlite_server.api()
    models = {m["id"]: m for m in api.get("/api/models").json()["items"]}
    # The OpenAI-compatible server's own list, with built-in prices for models Convo knows.
    assert {"fake-gpt", "fake-mini", "gpt-4o-mini"} <= set(models)
    assert models["gpt-4o-mini"]["provider"] == "openai" and models["gpt-4o-mini"]["output_usd_per_mtok"] == 0.6
    assert models["claude-sonnet-4-5"]["provider"] == "anthropic"
    assert models["fake-gpt"]["default"], "the first configured model is the default"

    thread = api.thread(model="gpt-4o-mini")
    stream = api.send(thread["id"], "[[fake reply='priced' usage=1000,2000]]")
    assert stream.of("usage")[0].data["cost_usd"] == (1000 * 0.15 + 2000 * 0.6) / 1e6
    assert fake_upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-env"
    claude = api.send(api.thread(model="claude-sonnet-4-5")["id"], "[[fake reply='from env']]")
    assert claude.text == "from env" and fake_upstream.requests[-1]["model"] == "claude-sonnet-4-5"
