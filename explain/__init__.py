"""explain: visual explanations for attention CNNs and the CAM family, one API.

    model = create_model("abn")                       # registry name, checkpoint, torchvision:ARCH
    with Explainer(model, method="gradcam") as ex:    # same call shape for every method
        expl = ex(x, targets=None)                    # -> Explanation
    render(expl, rgb, geometry).save("map.png")        # from explain.render: the picture

The names below load on first use (PEP 562): `import explain` and the command line's
argument parsing do not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {  # name -> the module that defines it
    "Explainer": "methods", "METHODS": "methods", "Explanation": "explanation",
    "ExplainError": "errors", "ImageError": "errors", "WeightsError": "errors",
    "Model": "model", "create_model": "registry", "list_models": "catalog",
    "load_image": "images",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
