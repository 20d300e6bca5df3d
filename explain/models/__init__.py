"""Architectures that `explain train` can build and checkpoints can name. Each model file
registers its classes (`@architecture` in explain.models.arch); importing it below is its
one registration line. The order is the registry's (and the native methods') order.
"""
from __future__ import annotations

from . import resnet, abn, abn_efficientnet, ran, cbam, se, attend_rectify, bayes_abn, vit, nonlocal_resnet, aa_resnet  # noqa: F401,I001
from .arch import ARCHS, Arch, build, get_arch

__all__ = ["ARCHS", "Arch", "build", "get_arch"]
