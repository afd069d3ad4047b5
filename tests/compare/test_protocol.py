from xstable.compare.protocol import decode, encode, initial_weights_path


def test_protocol_lines_round_trip_and_ignore_other_output():
    message = {"event": "done", "target": "a:b", "loss": 1.5}
    line = encode(message)
    assert line.endswith("\n") and decode(line) == message
    assert decode("Epoch 1/1 loss: 0.3\n") is None
    assert decode(line[:-5]) is None
    assert initial_weights_path("w", "t-1").endswith("t-1.npz")
