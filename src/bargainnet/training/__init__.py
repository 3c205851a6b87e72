"""Training with PyTorch Lightning, one job per module:

- :mod:`.config` — the typed YAML configuration (``load_config``, ``TrainConfig``)
- :mod:`.losses` — the paper's loss (reconstruction + two triplet losses)
- :mod:`.data` — deterministic sample positions and the data module (iHarmony4 or a stream)
- :mod:`.module` — the LightningModule (``BargainNetModule``)
- :mod:`.callbacks` — atomic/step checkpoints and the step progress bar
- :mod:`.checkpoints` — finding, resuming and reading checkpoints
- :mod:`.run` — :func:`train`, the run driver

Names are re-exported lazily: ``from bargainnet.training import train`` works, and importing
``bargainnet.training.config`` alone does not import Lightning.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("TrainConfig", "DataConfig", "OptimConfig", "TrainerConfig", "load_config", "save_config",
                     "apply_overrides", "parse_override", "config_to_yaml"), ".config"),
    **dict.fromkeys(("LossConfig", "BargainNetLoss", "bargainnet_loss", "triplet_loss"), ".losses"),
    **dict.fromkeys(("PositionSampler", "PositionDataset", "StreamValidation", "BargainNetDataModule"), ".data"),
    **dict.fromkeys(("BargainNetModule", "NonFiniteLossError", "lr_factor", "METRIC_KEYS", "PSNR_CAP"), ".module"),
    **dict.fromkeys(("AtomicCheckpointIO", "StepCheckpoint", "StepProgressBar"), ".callbacks"),
    **dict.fromkeys(("LAST", "CHECKPOINT_PATTERN", "find_checkpoints", "resolve_resume", "read_checkpoint",
                     "checkpoint_config", "model_from_checkpoint", "trained_model", "TrainedModel",
                     "checkpoint_in", "average_models"), ".checkpoints"),
    **dict.fromkeys(("train", "TrainResult"), ".run"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
