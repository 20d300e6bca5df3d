"""The library as the README shows it: its example runs as written and ends with a picture;
an Explanation displays itself in a notebook."""
from __future__ import annotations

import io
import re

import numpy as np
import torch
from PIL import Image

from conftest import ROOT
from explain.methods import Explainer
from explain.registry import create_model


def test_the_readme_library_example_runs_and_saves_a_picture(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## The library\s+```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "explain").symlink_to(ROOT / "explain")  # the example's relative sample path
    exec(compile(code, "README.md", "exec"), {})
    picture = Image.open(tmp_path / "chelsea_gradcam.png")
    assert picture.size[0] == 451 and picture.size[1] > 300  # the whole photo, labelled


def test_an_explanation_displays_itself_in_a_notebook():
    model = create_model("abn_fmnist")
    expl = Explainer(model, "gradcam")(torch.randn(3, 1, 28, 28))
    png = Image.open(io.BytesIO(expl._repr_png_()))
    assert png.size[0] > 3 * 224  # three maps side by side, a legend below
    shown = expl.show(np.full((28, 28, 3), 128, np.uint8), index=1)
    assert isinstance(shown, Image.Image) and shown.size[0] == 224
    from explain.render import render
    assert "render(expl, rgb, geometry).save(" in render.__doc__  # the documented call
