def test_models_lists_every_provider_with_prices_and_one_default(api):
    items = {m["id"]: m for m in api.get("/api/models").json()["items"]}
    assert items["fake-gpt"]["provider"] == "fakeai"
    assert items["fake-gpt"]["input_usd_per_mtok"] == 2.0 and items["fake-gpt"]["context_window"] == 8192
    assert items["claude-fake"]["provider"] == "fakeanthropic"
    assert items["smollm2-135m-instruct"]["provider"] == "local", "the embedded model is always there"
    assert items["smollm2-135m-instruct"]["input_usd_per_mtok"] == 0.0
    assert [m for m in items.values() if m["default"]] == [items["fake-gpt"]]
