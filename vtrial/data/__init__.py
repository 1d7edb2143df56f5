"""Data shipped inside the package: the drug library, fitted maps, the world-model checkpoints, the
built-in populations (``cohorts/``) and the example protocols (``protocols/``), found through
``importlib.resources`` so that an installed wheel finds them as a source checkout does."""

from __future__ import annotations

from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def data_file(*parts: str) -> Path:
    """The path of a file shipped in ``vtrial/data`` (it may not exist: callers check)."""
    return Path(str(resources.files("vtrial.data").joinpath(*parts)))


def builtin_names(folder: str) -> list[str]:
    """The names (file stems) of the YAML files in ``vtrial/data/FOLDER``, sorted."""
    root = resources.files("vtrial.data").joinpath(folder)
    return sorted(p.name.rsplit(".", 1)[0] for p in root.iterdir() if p.name.endswith(".yaml"))


def example_protocols() -> list[str]:
    """The names of the example protocols shipped with vtrial."""
    return builtin_names("protocols")


def example_protocol(name: str) -> Path:
    """The path of a shipped example protocol (``quickstart``, ``cipa_training``, ``fda_ecgrdvq``)."""
    path = data_file("protocols", f"{name}.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"no example protocol {name!r}; shipped: {', '.join(example_protocols())}")
    return path


def package_version() -> str:
    """The installed vtrial's version (``0+unknown`` for a source tree that was never installed)."""
    try:
        return version("vtrial")
    except PackageNotFoundError:
        return "0+unknown"
