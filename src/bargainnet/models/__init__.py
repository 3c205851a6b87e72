"""Generator families and their weights files.

- :mod:`.base` — the working-size rule and the interface every family implements
- :mod:`.registry` — families by name: :func:`create_model`, :func:`register_family`
- :mod:`.bargainnet` — the paper's model (domain code extractor + attention U-Net generator),
  built from :mod:`.domain_encoder` and :mod:`.generator`
- :mod:`.convert` — ``save_weights`` / ``load_weights`` (safetensors, self-describing) and the
  published checkpoints' conversion (``load_published``)

To add a family: a new module here whose model follows :mod:`.base` and whose config subclasses
:class:`~.base.ModelConfig`, plus one line in :data:`.registry.BUILTIN`.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("ModelConfig", "check_size", "default_size", "MIN_WORKING_SIZE"), ".base"),
    **dict.fromkeys(("create_model", "register_family", "get_family", "families", "architecture_of",
                     "build_config", "Family"), ".registry"),
    **dict.fromkeys(("BargainNet", "BargainNetConfig", "harmony_score", "HARMONY_SCORE_SCALE"), ".bargainnet"),
    **dict.fromkeys(("save_weights", "load_weights", "load_published", "read_metadata"), ".convert"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
