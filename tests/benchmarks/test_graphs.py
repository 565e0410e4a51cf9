"""benchmarks.graphs on the embedded bundle (one round, no timing asserted): the feeds follow
each graph's inputs, every (graph, bundle) pair is timed, and bad arguments are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import graphs

ort = pytest.importorskip("onnxruntime")


def test_feed_follows_the_graph_inputs():
    from earthx_sdk.defaults import default_bundle

    sess = ort.InferenceSession(str(default_bundle() / "mask_decoder.onnx"),
                                providers=["CPUExecutionProvider"])
    feed = graphs.feed_for(sess, {"Q": 2, "R": 3, "T": 5})
    assert feed["seg_hidden"].shape[:2] == (1, 2) and feed["prompt_states"].shape[:2] == (1, 3)
    assert feed["text_hidden"].shape[1] == 5
    assert set(np.unique(feed["prompt_masks"])) == {0.0, 1.0}
    logits, iou = sess.run(None, feed)
    assert logits.shape[:2] == (1, 2) and iou.shape == (1, 2)
    with pytest.raises(ValueError, match="dynamic axis 'Q' is none of"):
        graphs.feed_for(sess, {"R": 1, "T": 1})


def test_main_times_every_graph_of_every_bundle(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert graphs.main(["default", "default", "--repeat", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["graph"], r["ratio_to_first"] > 0) for r in rows] == [
        ("vision_optical_3", True)] * 2 + [("mask_decoder", True)] * 2
    assert rows[0]["ratio_to_first"] == 1.0 and "median ms" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        graphs.main(["default", "--repeat", "0"])
    with pytest.raises(SystemExit, match="no graph vision_sar_9"):
        graphs.main(["default", "--graphs", "vision_sar_9", "--repeat", "1"])
    with pytest.raises(SystemExit, match="not a bundle directory"):
        graphs.main([str(tmp_path), "--repeat", "1"])
