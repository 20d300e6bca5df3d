"""The official releases that load by name from the user's own checkpoint file (`--weights`).

- ABN (Fukui et al.; machine-perception-robotics-group/attention_branch_network):
  `imagenet.py -a resnetD` and `cifar.py -a resnet --depth D`, files `checkpoint.pth.tar` /
  `model_best.pth.tar` ({'epoch', 'state_dict', 'acc', 'best_acc', 'optimizer'}).
- CBAM (Woo et al.; Jongchan/attention-module): `ResidualNet('ImageNet', D, 1000, 'CBAM')`,
  files `*_checkpoint.pth.tar` / `*_model_best.pth.tar` ({'epoch', 'arch', 'state_dict',
  'best_prec1', 'optimizer'}).

Each entry is one of our architectures with the official layout and parameter names, and
the preprocessing of the official evaluation script.
"""
from __future__ import annotations

from dataclasses import dataclass

from .preprocess import IMAGENET, InputSpec

# torchvision's ImageNet ResNets, as both releases build them: depth -> (blocks, block type)
IMAGENET_RESNETS = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"),
                    50: ((3, 4, 6, 3), "bottleneck"), 101: ((3, 4, 23, 3), "bottleneck"),
                    152: ((3, 8, 36, 3), "bottleneck")}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)
CIFAR = InputSpec(size=(32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def cifar_resnet(depth: int) -> tuple[tuple[int, int, int], str]:
    """The official CIFAR ResNet rule (ABN's models/cifar/resnet.py): depth = 6n + 2, n blocks
    in each of three stages, Bottleneck blocks from depth 44 on (ResNet-110: 18 per stage)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, not {depth}")
    n = (depth - 2) // 6
    return (n, n, n), "bottleneck" if depth >= 44 else "basic"


@dataclass(frozen=True)
class Official:
    """One official release: what to build, how to feed it, and the file it expects."""
    arch: str
    kwargs: dict
    input: InputSpec
    data: str
    expects: str
    native: tuple[str, ...]  # its native map methods (as its architecture declares them)
    classes: tuple[str, ...] | None = None  # None: ImageNet's 1000 classes

    @property
    def num_classes(self) -> int:
        return self.kwargs["num_classes"]


def _imagenet(arch: str, depth: int, expects: str, native: str, **extra) -> Official:
    depths, block = IMAGENET_RESNETS[depth]
    kwargs = {"depths": depths, "widths": (64, 128, 256, 512), "block": block,
              "num_classes": 1000, "in_channels": 3, "stem": "imagenet", **extra}
    return Official(arch, kwargs, IMAGENET, "ImageNet-1k", expects, (native,))


def _official() -> dict[str, Official]:
    out = {f"abn_resnet{d}": _imagenet("abn_resnet", d, f"ABN imagenet.py -a resnet{d}: "
                                       "checkpoint.pth.tar or model_best.pth.tar", "abn")
           for d in IMAGENET_RESNETS}
    for d in CIFAR_DEPTHS:
        depths, block = cifar_resnet(d)
        for k in (10, 100):
            kwargs = {"depths": depths, "widths": (16, 32, 64), "block": block,
                      "num_classes": k, "in_channels": 3, "stem": "small"}
            out[f"abn_resnet{d}_cifar{k}"] = Official(
                "abn_resnet", kwargs, CIFAR, f"CIFAR-{k}",
                f"ABN cifar.py -a resnet --dataset cifar{k} --depth {d}: checkpoint.pth.tar "
                "or model_best.pth.tar", ("abn",),
                CIFAR10_CLASSES if k == 10 else tuple(map(str, range(k))))
    for d in (18, 34, 50, 101):
        out[f"cbam_resnet{d}"] = _imagenet(
            "cbam_resnet", d, f"CBAM train_imagenet.py --arch resnet --depth {d} --att-type "
            "CBAM: PREFIX_checkpoint.pth.tar or PREFIX_model_best.pth.tar", "cbam", reduction=16)
    return out


OFFICIAL = _official()

