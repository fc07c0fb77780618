"""Refuse, in a test or validation run, a checkpoint that leaves part of the model at its initial weights, and in
any run a ``load_from`` that is no checkpoint at all."""
import os.path as osp

from mmengine.hooks import Hook
from mmengine.optim import BaseOptimWrapper
from mmpose.registry import HOOKS

from .logged import logged
from .model import bare_model


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Make ``load_from`` strict when the run only evaluates (``mim test``, ``Runner.test`` / ``Runner.val``).

    mmengine's Runner loads ``load_from`` non-strictly: a checkpoint of another config, or one whose keys were
    renamed, leaves the head (or more) at random weights with only a warning in the log, and the whole inference
    runs to report an AP near 0. With this hook such a checkpoint raises ``ValueError`` before inference, naming
    the file and the first keys it lacks, has in excess or has in another shape
    (:func:`ipr_plugin.apis.checkpoint_check.load_checkpoint_strictly`; the model's own load hooks run first, so
    what ``IPRHead`` converts, such as an mmpose heatmap checkpoint's keys, counts as fitting).

    A training run keeps mmengine's behaviour: fine-tuning from another model's weights (a heatmap model's
    checkpoint, whose head differs) is what ``load_from`` is for there.

    In every run, a local ``load_from`` that cannot be a checkpoint (a config, an image or a text file given in
    its place) is refused before mmengine reads it, naming the file: torch's unpickler would fail with an error
    that names neither the file nor the problem (``invalid load key, 'h'``) and advises loading it with
    ``weights_only=False``.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        from ipr_plugin.apis.checkpoint_check import checkpoint_format_problem  # apis builds on engine
        from ipr_plugin.arguments import is_url
        path = runner._load_from
        if path and not is_url(path) and osp.isfile(path):  # a missing file: mmengine names it already
            problem = checkpoint_format_problem(path)
            if problem:
                raise logged(ValueError(problem))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.train() builds its optimizer wrapper before loading; val() and test() leave it a config (or
        # None). (Not the train loop: hooks such as EarlyStoppingHook build that on reading runner.train_loop.)
        if isinstance(runner.optim_wrapper, BaseOptimWrapper):
            return
        from ipr_plugin.apis.checkpoint_check import load_checkpoint_strictly  # apis builds on engine
        model = bare_model(runner)
        # Loads the weights (mmengine loads the same ones again right after): the keys can only be compared
        # after the model's load hooks have run.
        try:
            load_checkpoint_strictly(model, checkpoint, runner._load_from or 'the resumed checkpoint')
        except ValueError as error:
            logged(error)
            raise
