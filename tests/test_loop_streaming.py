"""Training on the streaming loader: progress (images/s, ETA), faults (non-finite loss, loader workers),
the preprocess recorded by train and reused by prune, ModelData's choice of preprocessing."""
import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, one_line_error
from PIL import Image

from compress.data import DataOptions, ModelData, Preprocess
from compress.common.errors import CompressError
from compress.common.progress import Progress, Throughput
from compress.training.config import FitConfig
from compress.training.evaluate import accuracy
from compress.training.loop import fit

TINY = ["--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8"]


class Recorder(Progress):
    def __init__(self):
        self.advances = []

    @contextlib.contextmanager
    def task(self, description, total):
        yield lambda n=1, **fields: self.advances.append((n, fields))


def test_throughput_rate_and_eta():
    now = [100.0]
    meter = Throughput(10, clock=lambda: now[0])
    assert meter.describe() == ""
    now[0] += 2.0
    meter.advance(1, images=64)
    meter.advance(1, images=36)
    assert meter.images_per_s == pytest.approx(50.0) and meter.eta_s == pytest.approx(8.0)
    assert meter.describe() == "50 img/s, ETA 0:08"
    now[0] += 3600
    assert meter.describe() == "0.0 img/s, ETA 4:00:08"


def test_fit_streams_whole_epochs_and_reports_images():
    from tiny_models import TinyCNN

    data = ModelData.open("digits", (1, 8, 8))
    rec = Recorder()
    fit(TinyCNN(), data, FitConfig(epochs=2, batch_size=100, lr=5e-3), progress=rec)
    n = data.size("train")
    assert len(rec.advances) == 2 * -(-n // 100)                      # every batch, the tail one included
    assert sum(f["images"] for _, f in rec.advances) == 2 * n
    assert [f["images"] for _, f in rec.advances][-1] == n % 100


def test_non_finite_loss_stops_training_naming_epoch_and_step(tmp_path):
    out = tmp_path / "m.pdparams"
    res = invoke("train", *TINY, "--epochs", 2, "--lr", "1e30", "--drop-path-rate", 0, "--out", out)
    line = one_line_error(res)
    assert "diverged" in line and "epoch 1, step 2 of 17" in line and "--lr" in line
    assert list(tmp_path.iterdir()) == []


def test_non_finite_loss_in_the_library():
    from tiny_models import TinyCNN

    model = TinyCNN()
    w = model.parameters()[-1]   # the head: nothing after it hides a NaN (a ReLU would)
    w.set_value(np.full(w.shape, np.nan, np.float32))
    with pytest.raises(CompressError, match=r"loss became nan at epoch 1, step 1 of"):
        fit(model, ModelData.open("digits", (1, 8, 8)), FitConfig(epochs=1))


def _folder(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
    return out


def _ignores_sigint(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_loader_workers_ignore_sigint_and_die_with_their_parent(tmp_path):
    root = _folder(tmp_path / "imgs")
    script = textwrap.dedent(f"""
        import os, sys, time
        from compress.data import Preprocess, make_loader, open_source
        loader = make_loader(open_source({str(root)!r}), "train", Preprocess((3, 8, 8)), 2, train=True,
                             num_workers=1, rank=0, world=1)
        next(iter(loader))
        print("ready", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        workers = _children(proc.pid)
        assert workers and all(_ignores_sigint(w) for w in workers)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 20
        while any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
                  for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
                       for w in workers)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_model_data_preprocess_choice(tmp_path):
    digits = ModelData.open("digits", (1, 16, 16))
    assert digits.preprocess == Preprocess((1, 16, 16), "exact", "half", "light")
    legacy = {"layout": "NCHW", "range": [0, 1], "mean": 0.5, "std": 0.5}
    old = ModelData.open("digits", (1, 16, 16), legacy)        # the shipped samples' record
    assert old.preprocess == digits.preprocess
    rec = Preprocess((3, 8, 8), "short", "imagenet", "standard").to_json()
    root = _folder(tmp_path / "imgs")
    kept = ModelData.open(str(root), (3, 8, 8), rec, DataOptions(augment="none", workers=0))
    assert (kept.preprocess.resize, kept.preprocess.normalize, kept.preprocess.augment) == ("short", "imagenet", "none")
    with pytest.raises(CompressError, match="trained with normalize imagenet") as e:
        ModelData.open(str(root), (3, 8, 8), rec, DataOptions(normalize="half"))
    assert e.value.param == "normalize"
    for bad in ({"augment": "heavy"}, {"resize": "crop"}, {"normalize": "zero"}, {"workers": -1}):
        with pytest.raises(CompressError) as e:
            DataOptions(**bad)
        assert e.value.param == next(iter(bad))
    x, y = kept.arrays("test", 3)
    assert x.shape == (3, 3, 8, 8) and x.dtype == np.float32 and len(y) == 3
    assert kept.describe()["source"] == str(root.resolve())


def test_train_records_preprocess_and_prune_heals_with_it(tmp_path):
    out = tmp_path / "m.pdparams"
    res = invoke("train", *TINY, "--epochs", 1, "--normalize", "imagenet", "--augment", "none", "--workers", 0,
                 "--out", out, "--json")
    assert res.exit_code == 0, res.output
    pre = json.loads(out.with_name("m.compress.json").read_text())["preprocess"]
    assert (pre["normalize"], pre["augment"], pre["resize"]["rule"]) == ("imagenet", "none", "exact")
    assert pre["mean"] == [pytest.approx(0.449, abs=1e-3)] and pre["formula"]
    pruned = tmp_path / "p.pdparams"
    res = invoke("prune", out, "--keep", 0.5, "--epochs", 1, "--augment", "light", "--out", pruned, "--json")
    assert res.exit_code == 0, res.output
    sc = json.loads(pruned.with_name("p.compress.json").read_text())
    assert sc["preprocess"] == pre and sc["lineage"][-1]["healing"]["augment"] == "light"
    # the recorded preprocess is what evaluation applies: the accuracy reproduces through it
    import compress

    bundle = compress.load_model(pruned)
    assert accuracy(bundle.model, ModelData.of_model(bundle), "test") == pytest.approx(sc["metrics"]["test_accuracy"])
    assert "--augment" in one_line_error(invoke("train", *TINY, "--epochs", 1, "--augment", "heavy", "--out",
                                                tmp_path / "x.pdparams"))
    assert "--workers" in one_line_error(invoke("prune", out, "--keep", 0.5, "--workers", -1))


@pytest.mark.parametrize("resize,normalize,shape", [("short", "imagenet", (3, 24, 24)), ("exact", "half", (1, 16, 16))])
def test_readme_device_preprocessing_matches_the_library(tmp_path, resize, normalize, shape):
    """The README's device snippet, run on the recorded preprocess, gives the library's evaluation input."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("def preprocess(path):")
    code = text[start:text.index("```", start)]
    pre = Preprocess(shape, resize, "half" if normalize == "half" else normalize, "standard")
    rng = np.random.default_rng(1)
    for size in ((40, 30), (30, 47), (27, 27)):
        path = tmp_path / f"{size}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        env = {"Image": Image, "np": np, "pre": json.loads(json.dumps(pre.to_json()))}
        exec(code, env)
        ours = env["preprocess"](str(path))
        im = Image.open(path).convert("RGB" if shape[0] == 3 else "L")
        np.testing.assert_allclose(ours[0], pre.eval_transform()(im), atol=1e-5)


def test_shapes_through_train_prune_and_report_accuracy(tmp_path):
    from compress.workflows.report import model_entry

    out, pruned = tmp_path / "s.pdparams", tmp_path / "s.keep0.5.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--arch-kwargs", '{"in_chans": 3}', "--input-shape", "3,8,8",
                 "--data", "shapes:100", "--epochs", 1, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    sc = json.loads(out.with_name("s.compress.json").read_text())
    assert sc["data"]["source"] == "shapes:100" and sc["preprocess"]["channel_order"] == "RGB"
    res = invoke("prune", out, "--keep", 0.5, "--epochs", 1, "--out", pruned, "--json")
    assert res.exit_code == 0, res.output
    healed = json.loads(res.stdout)["accuracy"]["after_healing"]
    assert model_entry(pruned)["accuracy"] == pytest.approx(healed)      # the report's accuracy, same pipeline


@pytest.mark.slow
def test_demo_on_shapes(tmp_path):
    from compress.workflows.sweep import demo

    rep = demo(tmp_path / "demo", sample="resnet_tiny", keeps=(1.0, 0.5), heal_epochs=1, data="shapes:200",
               train_epochs=1, report_options={"min_runs": 5, "max_seconds": 0, "batch_sizes": (1,)})
    assert rep["baseline"] == "resnet_tiny" and "keep 0.5" in rep["headline"] and not rep["failed"]
    assert json.loads((tmp_path / "demo" / "models" / "resnet_tiny.compress.json").read_text())["data"]["source"] \
        == "shapes:200"
    with pytest.raises(CompressError, match="built-in source"):
        demo(tmp_path / "x", data=str(tmp_path))


def _photo_folder(root: Path, per_class: int = 15) -> Path:
    """3 classes of 4:3 JPEG 'photos' (a coloured disc on noise), bigger than the model input: resized, cropped."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 120, (240, 320, 3), dtype=np.uint8)
            yy, xx = np.mgrid[:240, :320]
            disc = (yy - rng.integers(80, 160)) ** 2 + (xx - rng.integers(100, 220)) ** 2 < rng.integers(40, 80) ** 2
            a[disc, k] = 230
            Image.fromarray(a).save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.mark.slow
def test_photo_folder_at_224_trains_prunes_heals_exports_and_reports(tmp_path):
    photos = _photo_folder(tmp_path / "photos")
    model, pruned = tmp_path / "m.pdparams", tmp_path / "m.keep0.5.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--arch-kwargs", '{"in_chans": 3, "num_classes": 3}',
                 "--input-shape", "3,224,224", "--data", photos, "--epochs", 3, "--batch-size", 9, "--lr", 0.01,
                 "--drop-path-rate", 0.2, "--workers", 1, "--out", model, "--json")
    assert res.exit_code == 0, res.output
    pre = json.loads(model.with_name("m.compress.json").read_text())["preprocess"]
    assert (pre["resize"], pre["crop"]["size"], pre["normalize"], pre["augment"]) == \
        ({"rule": "short", "short_side": 256, "interpolation": "bilinear", "library": pre["resize"]["library"]},
         [224, 224], "imagenet", "standard")
    res = invoke("prune", model, "--keep", 0.5, "--epochs", 1, "--batch-size", 9, "--out", pruned,
                 "--export", tmp_path / "exp", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert info["input"]["preprocess"] == pre and info["parity"]["runtimes"]
    res = invoke("report", model, pruned, "--out", tmp_path / "rep", "--runs", 5, "--warmup", 10, "--seconds", 0,
                 "--batch", "1", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert {m["name"] for m in rep["models"]} == {"m", "m.keep0.5"}
    assert all(0 <= m["accuracy"] <= 1 for m in rep["models"])


def test_prune_checks_every_image_header_before_healing(tmp_path):
    root = _folder(tmp_path / "imgs")
    model = tmp_path / "m.pdparams"
    res = invoke("train", "--arch", "tiny_models:TinyCNN", "--arch-kwargs", '{"in_chans": 3, "num_classes": 2}',
                 "--input-shape", "3,8,8", "--data", root, "--epochs", 1, "--batch-size", 4, "--out", model)
    assert res.exit_code == 0, res.output
    (root / "b" / "5.png").write_bytes(b"")
    res = invoke("prune", model, "--keep", 0.5, "--epochs", 1, "--out", tmp_path / "p.pdparams")
    assert "b/5.png" in one_line_error(res) and "training" not in res.stderr
    assert not (tmp_path / "p.pdparams").exists()


@pytest.mark.parametrize("name,right", [("resnet_tiny", 356), ("vit_tiny", 350)])
def test_shipped_samples_through_the_pipeline(name, right):
    """98.89 % and 97.22 % of the 360 test digits through what train, prune, export and report use."""
    from compress.model.bundle import load_model
    from compress.workflows.report import model_entry
    from compress.workflows.sweep import sample_model

    bundle = load_model(sample_model(name))
    data = ModelData.of_model(bundle)          # the sidecar's legacy record: exact resize, half
    assert data.preprocess == Preprocess(tuple(bundle.input_shape), "exact", "half", "light")
    assert accuracy(bundle.model, data, "test") * 360 == pytest.approx(right)
    assert model_entry(sample_model(name))["accuracy"] * 360 == pytest.approx(right)
