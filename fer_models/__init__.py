"""fer_models: the study's CNNs as configs of one builder, stronger models, L2, training step, checkpoints.

    from fer_models import build_model, list_models, get_config
    model = build_model("optimized", input_size=48, l2=1e-3)

CLI: `python -m fer_models list`, `python -m fer_models summary NAME [--input-size 64]`.
Nothing here imports Ray.
"""

from .checkpoint import CheckpointError, load_checkpoint, load_train_state, save_checkpoint, save_train_state
from .config import ModelConfig
from .perf import resolve_precision, set_threads, tune_malloc
from .regularization import l2_penalty
from .registry import (
    UnknownModelError,
    build_from_config,
    build_model,
    count_params,
    describe,
    get_config,
    list_models,
    register,
)
from .training import (
    TrainConfig,
    classification_metrics,
    evaluate,
    make_optimizer,
    make_scheduler,
    train_one_epoch,
)

__all__ = [
    "CheckpointError", "ModelConfig", "TrainConfig", "UnknownModelError",
    "build_from_config", "build_model", "classification_metrics", "count_params", "describe", "evaluate",
    "get_config", "l2_penalty", "list_models", "load_checkpoint", "load_train_state", "make_optimizer",
    "make_scheduler", "register", "resolve_precision", "save_checkpoint", "save_train_state", "set_threads",
    "train_one_epoch", "tune_malloc",
]
