"""One method vocabulary: `--methods` reads the same words -- names, aliases, `all`,
`native`, `cam-family`, in any case and mixed -- in `explain`, `explain gallery` and
`explain eval`, each giving exactly what `explain.methods.select` gives."""
from __future__ import annotations

import json

import pytest

from conftest import SAMPLES
from explain.cli.main import main
from explain.methods import select
from explain.registry import create_model

SPECS = ["all", "native", "cam-family", "NATIVE,Grad-CAM", "abn,cam-family,gradcam"]


@pytest.fixture(scope="module")
def tiny(tiny_abn_dir):
    return str(tiny_abn_dir), create_model(str(tiny_abn_dir))


@pytest.mark.parametrize("spec", SPECS)
def test_explain_gallery_and_eval_read_the_same_words(tiny, spec, tmp_path, capsys):
    path, model = tiny
    expected = select(model, spec)
    image = SAMPLES / "fmnist" / "bag.png"
    assert main([str(image), "--model", path, "--methods", spec, "--json", "--out",
                 str(tmp_path / "x")]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [m.partition("@")[0] for m in record["methods"]] == expected

    assert main(["gallery", str(SAMPLES / "fmnist"), "--model", path, "--methods", spec,
                 "--out", str(tmp_path / "g"), "--workers", "0", "--no-progress"]) == 0
    assert json.loads((tmp_path / "g" / "manifest.json").read_text())["methods"] == expected

    assert main(["eval", "--model", path, "--data", "fashion-mnist", "--methods", spec,
                 "--limit", "4", "--steps", "2", "--sanity-images", "0", "--json",
                 "--out", str(tmp_path / "e")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["methods"] == expected


def test_an_unknown_word_is_refused_alike_everywhere(tiny, tmp_path, capsys):
    path, _ = tiny
    image = str(SAMPLES / "fmnist" / "bag.png")
    for argv in ([image, "--model", path], ["gallery", image, "--model", path],
                 ["eval", "--model", path, "--data", "fashion-mnist"]):
        assert main([*argv, "--methods", "cam-famly", "--out", str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err
        assert "--methods: unknown method 'cam-famly'; did you mean 'cam-family'?" in err
