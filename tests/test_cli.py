"""The command line end to end: real model on real photos, bad input, JSON, saved maps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, SAMPLES

from explain.cli.main import main

# Boxes in original-image pixels (x0, y0, x1, y1): the cat's face in chelsea.jpg (451x300,
# background at the right edge) and the cup with its coffee in coffee.jpg (600x400).
CAT_BOX = (40, 0, 380, 300)
CUP_BOX = (160, 20, 440, 280)


def run_json(capsys, *args) -> tuple[int, list[dict], str]:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def inside(pt, box) -> bool:
    return box[0] <= pt[0] < box[2] and box[1] <= pt[1] < box[3]


def test_photos_top1_and_gradcam_peak_on_object(tmp_path, capsys):
    code, recs, _ = run_json(capsys, str(SAMPLES / "chelsea.jpg"), str(SAMPLES / "coffee.jpg"),
                             "--methods", "gradcam", "--out", str(tmp_path), "--topk", "3")
    assert code == 0
    cat, cup = recs
    assert 281 <= cat["topk"][0]["index"] <= 285 and "cat" in cat["topk"][0]["name"]
    assert cup["topk"][0]["index"] == 967 and cup["topk"][0]["name"] == "espresso"
    assert inside(cat["methods"]["gradcam"]["peak"], CAT_BOX)
    assert inside(cup["methods"]["gradcam"]["peak"], CUP_BOX)
    for r in recs:
        assert len(r["topk"]) == 3
        width, height = Image.open(r["image"]).size  # the whole photo, labelled above and below
        assert Image.open(r["methods"]["gradcam"]["overlay"]).size[0] == width
        assert Image.open(r["methods"]["gradcam"]["overlay"]).size[1] > height
        assert Image.open(r["panel"]).size[0] > 2 * 224


# The ImageNet ABN's map is class-agnostic (where the attention branch sees evidence for any
# class): on coffee.jpg it peaks on the spoon on the saucer, so its box is the whole espresso
# set: cup, saucer and spoon.
ESPRESSO_BOX = (75, 20, 485, 390)


def test_abn_on_photos_names_what_the_default_model_names_and_maps_the_object(tmp_path, capsys):
    photos = [str(SAMPLES / "chelsea.jpg"), str(SAMPLES / "coffee.jpg")]
    _, default, _ = run_json(capsys, *photos, "--methods", "gradcam", "--out", str(tmp_path / "d"))
    code, recs, err = run_json(capsys, *photos, "--model", "abn", "--methods", "abn",
                               "--out", str(tmp_path / "abn"))
    assert code == 0 and "warning" not in err  # a colour photo is this model's domain
    assert [r["topk"][0]["index"] for r in recs] == [r["topk"][0]["index"] for r in default]
    cat, cup = recs
    assert inside(cat["methods"]["abn"]["peak"], CAT_BOX)
    assert inside(cup["methods"]["abn"]["peak"], ESPRESSO_BOX)


def test_text_output_and_save_maps(tiny_abn_dir, tmp_path, capsys):
    code = main([str(SAMPLES / "fmnist" / "sneaker.png"), "--model", str(tiny_abn_dir),
                 "--out", str(tmp_path), "--save-maps", "--methods", "abn,gradcam"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.startswith(str(SAMPLES / "fmnist" / "sneaker.png") + ": ")
    assert "warning" not in err  # a 28x28 grayscale item fits a Fashion-MNIST model
    m = np.load(tmp_path / "sneaker_abn.npy")
    assert m.shape == (28, 28) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    assert (tmp_path / "sneaker_gradcam.png").is_file() and (tmp_path / "sneaker_panel.png").is_file()


def bad_inputs(d):
    """The foundation issue's bad inputs, each as a file in `d`."""
    good = d / "good.png"
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(good)
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_bytes(b"definitely not a jpeg" * 20)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(d / "dot.png")
    data = (SAMPLES / "coffee.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.new("1", (30000, 30000)).save(d / "bomb.png")
    Image.fromarray(np.full((20, 20, 3), 50, np.uint8)).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray((np.arange(400).reshape(20, 20) * 100).astype(np.uint16)).save(d / "deep.png")
    Image.fromarray(np.zeros((20, 20, 4), np.uint8)).save(d / "rgba.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).convert("P").save(d / "palette.png")
    return good


def test_bad_files_one_line_each_others_still_run(tiny_abn_dir, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    bad_inputs(d)
    missing = tmp_path / "missing.png"
    code, recs, err = run_json(capsys, str(d), str(missing), "--model", str(tiny_abn_dir),
                               "--out", str(tmp_path / "out"), "--methods", "abn")
    assert code == 1
    ok = {r["image"].split("/")[-1] for r in recs if "error" not in r}
    failed = {r["image"].split("/")[-1]: r["error"] for r in recs if "error" in r}
    assert ok == {"good.png", "cmyk.jpg", "deep.png", "rgba.png", "palette.png"}
    assert set(failed) == {"empty.jpg", "text.jpg", "dot.png", "cut.jpg", "bomb.png", "missing.png"}
    err_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 6 and "Traceback" not in err
    for name, msg in failed.items():
        assert name in msg
    assert "6 of 11 image(s) failed" in err


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuchmodel"], "--model: unknown model 'nosuchmodel'"),
    (["--methods", "gradkam"], "--methods: unknown method 'gradkam'; did you mean 'gradcam'?"),
    (["--model", "efficientnet_lite"], "did you mean 'efficientnet_lite0'?"),
    (["--methods", "abn"], "has no native 'abn' map"),
    (["--target", "5000"], "--target: 5000 is not a class index"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    code = main([str(SAMPLES / "coffee.jpg"), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))  # failed before any work


def test_wrong_weights_and_malicious_pickle(tmp_path, capsys, tiny_resnet_dir):
    import pickle
    code = main([str(SAMPLES / "coffee.jpg"), "--model", "torchvision:resnet18", "--weights",
                 str(tiny_resnet_dir / "model.safetensors"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "weights do not fit ResNet" in err and "missing keys" in err

    class Evil:
        def __reduce__(self):
            return (exec, ("open('owned','w').write('x')",))
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": Evil()}))
    code = main([str(SAMPLES / "coffee.jpg"), "--model", "torchvision:resnet18", "--weights",
                 str(evil), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "refused to load" in err and not (tmp_path / "owned").exists()


def test_help_everywhere(capsys):
    for cmd in ([], ["image"], ["train"], ["models"]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0 and "usage: explain" in capsys.readouterr().out


def test_console_script_lists_models():
    script = Path(sys.executable).with_name("explain")
    out = subprocess.run([str(script), "models"], capture_output=True, text=True, check=True,
                         timeout=300).stdout
    assert "efficientnet_lite0" in out and "abn_resnet50" in out


@pytest.mark.parametrize("argv", [["models", "--json"], ["models"]])
def test_a_reader_that_leaves_early_gets_no_traceback(argv):
    """`explain models --json | head`: the reader is gone before the CLI writes, so every
    write meets EPIPE. The read end is closed before the child starts: closing it after
    Popen raced with a fast child that could fill the pipe buffer first (exit 0)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "explain", *argv], cwd=ROOT,
                                stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141  # as a writer killed by SIGPIPE
    assert err == ""


def test_models_json_compares_each_zoo_model_with_the_plain_resnet(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    plain = rows["resnet20_fmnist"]["test_accuracy"]
    abn = rows["abn_resnet20_fmnist"]
    assert 0.9 < plain < 1 and abn["aliases"] == ["abn_fmnist"]
    assert rows["abn_efficientnet_lite0_imagenet"]["aliases"] == ["abn"]  # photos: the ImageNet ABN
    assert abn["vs_plain"] == pytest.approx(100 * (abn["test_accuracy"] - plain), abs=0.01)
    assert abn["plain_baseline"] == "resnet20_fmnist"  # same data, same epochs
    assert rows["resnet20_fmnist"]["vs_plain"] is None  # the baseline itself
    assert rows["efficientnet_lite0"]["vs_plain"] is None  # nothing measured


NO_TORCH = """
import sys
from explain.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "captum", "cv2"})
print("IMPORTED", heavy, "EXIT", code)
"""


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0), (["models"], 0), (["models", "--json"], 0),
    (["photo.jpg", "--topk", "0"], 2), (["photo.jpg", "--topk3"], 2), (["modles"], 2),
    (["train", "--data", "x", "--out", "y"], 2), (["finetune", "--help"], 0),
    (["data", "export", "--help"], 0),
])
def test_help_models_and_argument_errors_import_no_torch(argv, code):
    """The start-up goal (benchmarks/startup.py times it): nothing heavy is imported before
    a command runs, and `explain models` reads the cards only."""
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1] == f"IMPORTED [] EXIT {code}", done.stderr


@pytest.mark.parametrize("argv, message", [
    (["modles"], "'modles' is neither a command nor a file; did you mean 'models'?"),
    (["photo.jpg", "--topk3", "2"], "unrecognized argument --topk3; did you mean '--topk'?"),
    (["--hlep"], "unrecognized argument --hlep; did you mean '--help'?"),
    (["models", "--jsn"], "unrecognized argument --jsn; did you mean '--json'?"),
    (["gallery", "in", "--thread", "2"], "unrecognized argument --thread"),
    (["train", "--arch", "abn_resnt", "--data", "x", "--out", "y"],
     "unknown architecture 'abn_resnt'; did you mean 'abn_resnet'?"),
])
def test_a_typo_gets_did_you_mean(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


def test_a_file_named_like_a_command_is_still_an_image(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("modles").write_bytes(b"not an image")
    assert main(["modles", "--out", str(tmp_path / "out")]) == 1
    assert "did you mean" not in capsys.readouterr().err


def all_parsers(parser, name="explain"):
    """(command, parser) for the top level and every subcommand, nested ones too."""
    import argparse
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from all_parsers(p, f"{name} {sub}")


def test_help_texts_say_each_default_once_and_mean_what_they_say(capsys):
    from explain.cli.main import build_parser
    parsers = dict(all_parsers(build_parser()))
    for command, parser in parsers.items():
        text = parser.format_help()
        assert "%%" not in text and "(default: None)" not in text, command
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help == "==SUPPRESS==":
                continue
            said = formatter._expand_help(action) if action.help else ""
            flag = action.option_strings[-1]
            if action.nargs == 0:  # a flag: no "(default: True)" for --no-augment
                assert "(default: True)" not in said and "(default: False)" not in said, flag
            elif action.default is not None:
                assert said.lower().count("default") == 1, f"{command} {flag}: {said!r}"
            if flag == "--device":
                assert action.default == "auto", command  # the same in every command
    assert "95% bootstrap interval" in " ".join(parsers["explain eval"].format_help().split())
    gallery = " ".join(parsers["explain gallery"].format_help().split())
    assert "thumbs/ (only for tiles larger than 128 px)" in gallery
    assert "first 12 readable rows" in gallery
