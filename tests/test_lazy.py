"""The packages' lazy public names: each loads its module when first asked for, an unknown one is
an AttributeError naming the package (what `from package import name` turns into an ImportError)."""

from __future__ import annotations

import importlib

import pytest

from kinetics_assets.lazy import lazy_exports


# (readers is left out: its DataLoader module imports torch, which starts `ldconfig` on first import,
# a process the fast tier refuses; tests/readers import it at collection.)
@pytest.mark.parametrize("package", ["kinetics_assets.media", "kinetics_assets.search", "kinetics_assets.dedup"])
def test_every_public_name_resolves_from_its_module(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, (package, name)


def test_an_unknown_name_names_the_package():
    module_getattr = lazy_exports("kinetics_assets.search", {"IndexConfig": "config"})
    assert module_getattr("IndexConfig").__name__ == "IndexConfig"
    with pytest.raises(AttributeError, match=r"'kinetics_assets\.search' has no attribute 'Nope'"):
        module_getattr("Nope")
