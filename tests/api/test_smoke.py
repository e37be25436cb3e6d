def test_send_streams_answer(api):
    thread = api.thread()
    stream = api.send(thread["id"], "hello there")
    assert [e.event for e in stream.events][0] == "start"
    assert stream.text == "You said: hello there"
    assert stream.last.event == "done"
