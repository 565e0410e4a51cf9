"""earthx_sdk.processor helpers that need no model (torch-free)."""

import numpy as np

from earthx_sdk.processor import IGNORE_INDEX, text_positions


def test_text_positions_skip_slots_and_stop_at_the_answer():
    ids = np.array([1, 7, 7, 7, 2, 9, 9, 3, 4, 5, 6])  # 7 = <image>, 9 = <region>
    labels = np.full(len(ids), IGNORE_INDEX)
    labels[8:] = ids[8:]  # the answer starts at position 8
    assert text_positions(ids, labels, 7, 9).tolist() == [0, 4, 7]
    assert text_positions(ids, None, 7, 9).tolist() == [0, 4, 7, 8, 9, 10]
    # no answer tokens: the whole sequence is prompt
    assert text_positions(ids, np.full(len(ids), IGNORE_INDEX), 7, 9).tolist() == \
        [0, 4, 7, 8, 9, 10]
