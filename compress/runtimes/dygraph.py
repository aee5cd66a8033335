"""Running the dygraph (eager) Paddle model: the reference every export is compared with."""
from __future__ import annotations

import numpy as np
import paddle


def run_dygraph(model, x: np.ndarray) -> np.ndarray:
    """Logits of ``model`` (eval mode, no gradients) for a batch; the first output if it returns several."""
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(x))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out.numpy()
