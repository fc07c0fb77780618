"""Integral Human Pose Regression for mmpose.

Importing this package (directly or through a config's ``custom_imports = dict(imports=['ipr_plugin'],
allow_failed_imports=False)``) registers into mmpose's own registries the plugin's codec (``DSNTLabel``), head
(``IPRHead``), losses (``IntegralL1Loss``, ``IntegralJointLoss``), data preprocessor (``IPRDataPreprocessor``),
collate function (``ipr_collate``), dataset (``IPRCocoDataset``), data transforms (``IPRLoadImage``,
``IPRRandomFlip``, ``IPRRandomBBoxTransform``, ``IPRTopdownAffine``, ``IPRPackInputs``), metric (``IPRCocoMetric``),
visualizer (``IPRPoseLocalVisualizer``) and hooks (``ChannelsLastHook``, ``CompileHook``, ``IPRRuntimeInfoHook``,
``FiniteLossHook``, ``CheckpointFitHook``, ``IPRTestCollateHook``, ``MetricKeyCheckHook``, ``CropSizeCheckHook``).
It also allow-lists the globals of mmengine checkpoints for ``torch.load(weights_only=True)``, lets ``--launcher
pytorch`` run on machines without CUDA (gloo), makes mmengine's hooks behave as documented
(``default_hooks=dict(name=None)`` for any name, ``Runner.val()`` with ``save_best``), and warns of a training
loader that repeats its augmentation every epoch.

Importing any of its subpackages runs this first, so it imports mmpose too.
"""
# the stack's versions first: outside their range an import below would fail with a message that misleads
from .compat import check_versions  # noqa: I001
check_versions()
# engine first: its checkpoint, launch and hook fixes must be in place before anything builds a Runner
from . import engine  # noqa: F401,E402
from . import codecs, datasets, evaluation, models, visualization  # noqa: F401
from .datasets import collate, transforms  # noqa: F401  (register the collate function and transforms)
from .datasets.body import coco_dataset  # noqa: F401  (registers the dataset)
from .version import __version__

__all__ = ['__version__']
