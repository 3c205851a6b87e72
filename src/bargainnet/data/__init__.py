"""Data: the iHarmony4 layout reader, transforms, a training cache, and the composite synthesizer.

Submodules (imported on use, so that ``import bargainnet.data`` stays light):

- :mod:`~bargainnet.data.iharmony4` — :class:`IHarmony4Dataset`, list/name parsing, checks
- :mod:`~bargainnet.data.transforms` — ``train_transform`` / ``test_transform``
- :mod:`~bargainnet.data.cache` — ``build_cache`` (``bargainnet data cache ROOT``)
- :mod:`~bargainnet.data.synthesis` — ``synthesize`` (``bargainnet synth``), ``CompositeStream``,
  ``make_tiny_dataset``
- :mod:`~bargainnet.data.perturb` — the perturbation families (plain numpy functions)
- :mod:`~bargainnet.data.sources` — photos, object masks, procedural photos
"""
