"""Placeholder until this kernel lands (kernels issue)."""


def available() -> tuple[bool, str]:
    return False, "not implemented yet"


def region_pool(features, boxes, masks, grid, image_hw):
    raise NotImplementedError("this region_pool kernel is not implemented yet")
