"""`compress train` under paddle.distributed.launch: 2 CPU processes equal 1 process on the same global batches."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent


def test_two_process_train_matches_one_process(tmp_path):
    """BN-free model (batch statistics would differ per shard); digits' 1,078 training images split evenly."""
    env = {**os.environ, "PYTHONPATH": str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    exe = str(Path(sys.executable).with_name("compress"))
    args = ["train", "--arch", "tiny_models:TinyTransformer", "--input-shape", "1,8,8", "--epochs", "3",
            "--batch-size", "64", "--drop-path-rate", "0.3", "--schedule", "adaptive", "--target-keep", "0.5",
            "--warmup-epochs", "1", "--seed", "4"]
    one, two = tmp_path / "one.pdparams", tmp_path / "two.pdparams"
    subprocess.run([exe, *args, "--out", str(one)], check=True, env=env, capture_output=True, timeout=300)
    res = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                          "--log_dir", str(tmp_path / "logs"), exe, *args, "--out", str(two)],
                         env=env, capture_output=True, text=True, timeout=300)
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("workerlog.*")}
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:] + str(logs)[-3000:]
    assert "wrote" in logs["workerlog.0"] and "wrote" not in logs["workerlog.1"]   # only rank 0 writes
    assert sorted(p.name for p in tmp_path.glob("two*")) == ["two.compress.json", "two.pdparams"]
    a, b = (pickle.loads(p.read_bytes()) for p in (one, two))
    assert set(a) == set(b)
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert diff < 1e-5, diff
    sa, sb = (json.loads(p.with_name(p.stem + ".compress.json").read_text()) for p in (one, two))
    for k, v in sa["statistics_sums"]["sums"].items():
        np.testing.assert_allclose(sb["statistics_sums"]["sums"][k], v, rtol=1e-6, atol=1e-9, err_msg=k)
    assert sa["statistics_sums"]["sums"]["seen"][0] == 3 * 1078                   # every sample, counted once
    assert sa["training"]["schedule"]["targeted"] == sb["training"]["schedule"]["targeted"]
    assert [h["rates"] for h in sa["training"]["history"]] == [h["rates"] for h in sb["training"]["history"]]
    np.testing.assert_allclose([h["loss"] for h in sb["training"]["history"]],
                               [h["loss"] for h in sa["training"]["history"]], rtol=1e-5)
