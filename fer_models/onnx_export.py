"""Export a trained model to ONNX and check onnxruntime gives PyTorch's outputs.

We use PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the
``torch.export``-based one needs the ``onnxscript`` package, which is not a dependency. The graph has
one input ``image`` (float32 ``[batch, C, S, S]``, already preprocessed exactly as for PyTorch: see
``fer_models.predict.preprocess_faces``) and one output ``logits`` ``[batch, 7]``; the batch axis is
dynamic. Run it via the predict CLI::

    python -m fer_models.predict face.jpg --checkpoint CKPT --export onnx model.onnx

which exports and then runs :func:`check_parity` on the faces it found.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class OnnxParityError(AssertionError):
    """onnxruntime's outputs differ from PyTorch's by more than the tolerance."""


def export_onnx(
    model: nn.Module,
    input_size: int,
    path: str | Path,
    *,
    channels: int = 1,
    example: torch.Tensor | None = None,
) -> Path:
    """Write ``model`` (in eval mode) as ONNX to ``path`` with a dynamic batch axis; returns the path.

    ``example``: a real input batch ``[N, channels, input_size, input_size]`` used for tracing
    (zeros when omitted; tracing only needs the shape). The written file is checked with
    ``onnx.checker``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if example is None:
        example = torch.zeros(1, channels, input_size, input_size)
    with warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated on every call; we choose it on purpose.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            model,
            (example.float(),),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def onnx_session(path: str | Path) -> ort.InferenceSession:
    """A CPU onnxruntime session for the file at ``path``."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Logits ``[N, 7]`` from onnxruntime for float32 ``inputs`` ``[N, C, S, S]``."""
    sess = onnx_session(path)
    return sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(inputs, dtype=np.float32)})[0]


def check_parity(model: nn.Module, path: str | Path, inputs: np.ndarray | torch.Tensor, *, atol: float = 1e-4) -> float:
    """Max absolute difference between PyTorch's and onnxruntime's logits on ``inputs``.

    Raises :class:`OnnxParityError` when it exceeds ``atol``.
    """
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = run_onnx(path, x.numpy())
    if got.shape != ref.shape:
        raise OnnxParityError(f"{path}: onnxruntime output shape {got.shape} != PyTorch {ref.shape}")
    diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    if not diff <= atol:  # also catches NaN
        raise OnnxParityError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} > {atol:g}")
    return diff
