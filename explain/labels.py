"""Class names as people write them in folder names: compared without case and punctuation,
so that a folder `t_shirt_top` names the class "T-shirt/top". The gallery, the editor,
fine-tuning and evaluation all read labels from folders this one way."""
from __future__ import annotations

import re
from typing import Sequence


def class_key(name: str) -> str:
    """A class or folder name compared without case and punctuation."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def class_lookup(classes: Sequence[str]) -> dict[str, int]:
    """class_key -> index into `classes`."""
    return {class_key(c): i for i, c in enumerate(classes)}
