"""explain: visual explanations for attention CNNs and the CAM family, one API.

    model = create_model("abn")                       # registry name, checkpoint, torchvision:ARCH
    with Explainer(model, method="gradcam") as ex:    # same call shape for every method
        expl = ex(x, targets=None)                    # -> Explanation
"""
from .errors import ExplainError, ImageError, WeightsError
from .explanation import Explanation
from .images import load_image
from .methods import METHODS, Explainer
from .registry import Model, create_model, list_models

__all__ = ["Explainer", "Explanation", "ExplainError", "ImageError", "METHODS", "Model",
           "WeightsError", "create_model", "list_models", "load_image"]
__version__ = "0.1.0"
