"""Public names of a package that load their module on first use, so that importing the package
(the code location does, for settings' defaults and types) loads no engine: Lance, PyAV, torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: each name of `exports` from its submodule, imported
    when the name is first asked for.
    """

    def module_getattr(name: str) -> Any:  # noqa: ANN401 - whichever public name is asked for
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return module_getattr
