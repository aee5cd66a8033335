"""Checkpoints and resume: a run interrupted after an epoch and resumed ends as the uninterrupted run."""
import contextlib

import numpy as np
import pytest

from compress.training.checkpoint import Checkpointing, checkpoint_path, remove_checkpoint
from compress.data import ModelData
from compress.common.errors import CompressError
from compress.graph.flops import blocks_with_flops
from compress.common.progress import Progress
from compress.training.config import FitConfig
from compress.training.loop import fit, seed_everything

SHAPE = (1, 8, 8)


class Killed(BaseException):
    pass


class KillAfter(Progress):
    """Stops the run (like a kill: nothing after it runs) once ``epochs`` epochs are logged."""

    def __init__(self, epochs):
        self.epochs, self.logged = epochs, 0

    @contextlib.contextmanager
    def task(self, description, total):
        yield lambda n=1, **fields: None

    def log(self, message):
        if message.startswith("epoch "):
            self.logged += 1
        elif message.startswith("resumed") or message.startswith("early"):
            return
        if self.logged > self.epochs:
            raise Killed()


def _model():
    from tiny_models import TinyCNN

    seed_everything(3)
    return TinyCNN()


def _run(config, ck=None, progress=None, data=None):
    model = _model()
    blocks, _ = blocks_with_flops(model, SHAPE)
    data = data or ModelData.open("digits", SHAPE)
    res = fit(model, data, config, blocks=blocks, checkpoint=ck, progress=progress or Progress())
    return model, res


CONFIG = dict(epochs=4, batch_size=128, lr=5e-3, seed=5, drop_path_rate=0.2, schedule="adaptive", target_keep=0.5,
              warmup_epochs=1, keep_best=True, patience=5)


def test_resumed_run_equals_uninterrupted(tmp_path):
    config = FitConfig(**CONFIG)
    whole, whole_res = _run(config)
    ck = checkpoint_path(tmp_path / "m.pdparams")
    with pytest.raises(Killed):   # dies at the end of epoch 3, before its checkpoint
        _run(config, Checkpointing(ck, {"arch": "tiny"}), KillAfter(2))
    assert sorted(p.name for p in ck.iterdir()) == ["arrays-2.pdparams", "state.json"]  # older epochs removed
    resumed, res = _run(config, Checkpointing(ck, {"arch": "tiny"}, resume=True))
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), resumed.state_dict()[k].numpy(), err_msg=k)
    for k, v in whole_res.stats.sums.items():
        np.testing.assert_array_equal(v, res.stats.sums[k], err_msg=k)
    assert res.history == whole_res.history and res.best_epoch == whole_res.best_epoch
    assert res.schedule == whole_res.schedule


def test_checkpoint_refusals(tmp_path):
    config = FitConfig(**{**CONFIG, "epochs": 2})
    ck = checkpoint_path(tmp_path / "m.pdparams")
    with pytest.raises(CompressError, match="nothing to resume"):
        _run(config, Checkpointing(ck, {}, resume=True))
    with pytest.raises(Killed):
        _run(config, Checkpointing(ck, {}), KillAfter(1))
    with pytest.raises(CompressError, match="unfinished run .after epoch 1.: continue it with resume"):
        _run(config, Checkpointing(ck, {}))
    with pytest.raises(CompressError, match=r"different run: config\.lr \(checkpoint: 0.005, this run: 0.001\)"):
        _run(FitConfig(**{**CONFIG, "epochs": 2, "lr": 1e-3}), Checkpointing(ck, {}, resume=True))
    with pytest.raises(CompressError, match=r"different run: arch"):
        _run(config, Checkpointing(ck, {"arch": "other"}, resume=True))


def _cli(tmp_path):
    import os
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(tests) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return str(Path(sys.executable).with_name("compress")), env


@pytest.mark.slow
def test_sigkilled_train_resumes_to_the_uninterrupted_weights(tmp_path):
    """The real console script, killed with SIGKILL once an epoch's checkpoint exists, then --resume."""
    import json
    import signal
    import subprocess
    import time

    from compress.model.weights import load_weights

    exe, env = _cli(tmp_path)
    args = [exe, "train", "--arch", "tiny_models:TinyCNN", "--input-shape", "1,8,8", "--epochs", "8",
            "--batch-size", "32", "--drop-path-rate", "0.2", "--schedule", "adaptive", "--target-keep", "0.5",
            "--seed", "7"]
    whole, part = tmp_path / "whole.pdparams", tmp_path / "part.pdparams"
    subprocess.run([*args, "--out", str(whole)], check=True, env=env, capture_output=True, timeout=300)
    assert not checkpoint_path(whole).exists()   # removed once the output is written
    proc = subprocess.Popen([*args, "--out", str(part)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = checkpoint_path(part) / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = json.loads(state.read_text())["epoch"]
    assert 1 <= saved < 8 and not part.exists(), saved    # killed mid-training, nothing written
    res = subprocess.run([*args, "--out", str(part), "--resume"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed after epoch" in res.stderr
    a, b = load_weights(whole), load_weights(part)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    sa, sb = (json.loads(p.with_name(p.stem + ".compress.json").read_text()) for p in (whole, part))
    assert sa["statistics_sums"] == sb["statistics_sums"] and sa["training"]["history"] == sb["training"]["history"]
    assert not checkpoint_path(part).exists()
    again = subprocess.run([*args, "--out", str(part), "--resume"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: nothing to resume")


def test_healing_in_prune_resumes_to_the_uninterrupted_weights(tmp_path):
    from compress.model.weights import load_weights
    from compress.workflows.prune import HealConfig, prune
    from compress.workflows.train import train

    base = tmp_path / "t.pdparams"
    train(base, arch="tiny_models:TinyCNN", input_shape=(1, 8, 8),
          config=FitConfig(epochs=1, batch_size=128, drop_path_rate=0.1))
    heal = HealConfig(epochs=3, batch_size=128, lr=2e-3, patience=5, seed=2)
    whole, part = tmp_path / "whole.pdparams", tmp_path / "part.pdparams"
    prune(base, blocks=[1], out=whole, heal=heal)
    with pytest.raises(Killed):
        prune(base, blocks=[1], out=part, heal=heal, progress=KillAfter(1))
    assert not part.exists() and (checkpoint_path(part) / "state.json").is_file()
    with pytest.raises(CompressError, match="different run: removed"):
        prune(base, blocks=[0], out=part, heal=heal, resume=True)
    prune(base, blocks=[1], out=part, heal=heal, resume=True)
    a, b = load_weights(whole), load_weights(part)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not checkpoint_path(part).exists()


def test_auto_resume_and_a_crafted_checkpoint(tmp_path):
    """resume=None (sweep, demo): this run's checkpoint is resumed, another run's replaced; arrays never run code."""
    import os
    import pickle

    config = FitConfig(**{**CONFIG, "epochs": 2})
    whole, _ = _run(config)
    ck = checkpoint_path(tmp_path / "m.pdparams")
    with pytest.raises(Killed):
        _run(FitConfig(**{**CONFIG, "epochs": 2, "lr": 1e-3}), Checkpointing(ck, {}), KillAfter(1))
    again, _ = _run(config, Checkpointing(ck, {}, resume=None))      # another run's: started afresh
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), again.state_dict()[k].numpy(), err_msg=k)
    remove_checkpoint(ck)   # as the workflows do once the output is written
    with pytest.raises(Killed):
        _run(config, Checkpointing(ck, {}), KillAfter(1))
    resumed, _ = _run(config, Checkpointing(ck, {}, resume=None), KillAfter(99))
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), resumed.state_dict()[k].numpy(), err_msg=k)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    import json

    named = json.loads((ck / "state.json").read_text())["arrays"]
    (ck / named).write_bytes(pickle.dumps({"model/x": Evil()}))
    with pytest.raises(CompressError, match="refusing to load"):
        _run(config, Checkpointing(ck, {}, resume=True))
    assert not (tmp_path / "pwned").exists()
