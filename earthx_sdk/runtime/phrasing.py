"""How the runtime phrases its questions: exactly as the model was trained.

The training templates (`training/templates.py`, not part of the installed SDK) phrase each task
several ways; the runtime uses one trained phrasing per task, so a question from `classify_region`
or `segment` is one the model has seen. `tests/runtime/test_phrasing.py` checks that each phrasing
here is one of the templates'.
"""

from __future__ import annotations

REGION_CLASS = "What is the object in <region>?"
REGION_CAPTION = "Describe the region <region>."
PROMPT_SEG = "Segment the object in <region>."
REFER_SEG = "Please segment {target}."
SEG_ANSWER = "<seg>"  # the trained answer form segment() constrains its answer to begin with


def refer_seg(target: str) -> str:
    """The referring-segmentation question for a target phrase ("the ship on the left").

    Raises:
        ValueError: an empty target, or one holding a placeholder (<image>, <region>, <seg>).
    """
    target = target.strip().rstrip(".")
    if not target:
        raise ValueError("segment: the target text must not be empty")
    for tok in ("<image>", "<region>", "<seg>"):
        if tok in target:
            raise ValueError(f"segment: a referring text must not contain {tok}, got {target!r} "
                             f"(pass prompts= to segment a prompted region)")
    return REFER_SEG.format(target=target)
