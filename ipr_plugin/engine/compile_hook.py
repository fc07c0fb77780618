"""``torch.compile`` of the model's tensor modules, as a hook: configs switch it on without code."""
import torch
from mmengine.hooks import Hook
from mmpose.registry import HOOKS

from .model import bare_model


@HOOKS.register_module()
class CompileHook(Hook):
    """``torch.compile`` the model's tensor modules (by default the backbone and the head's deconv stack).

    mmengine's own switch (``compile=True``) compiles the whole ``train_step``: data preprocessing, data
    samples, the loss glue and the optimizer step, which dynamo has to split at every Python object. Compiling
    only the modules that do tensor work keeps their graphs whole. Each module's ``forward`` is replaced on the
    instance, so parameter names, state dicts and checkpoints stay exactly as without compilation (no
    ``_orig_mod.`` prefixes), and a model wrapper (DDP) keeps wrapping the same module.

    Compilation happens at the first forward, after every ``before_*`` hook (ChannelsLastHook's conversion
    included), and takes minutes for a ResNet-50; it happens again for every new input shape
    (``dynamic=None``: after the second shape, one dynamic graph); the numbers computed are the same up to
    floating-point reassociation.

    Args:
        modules (sequence[str]): dotted names of submodules of the model (``'backbone'``, ``'head.final_layer'``
            ...). A name that is not a submodule is an error; ``optional`` names may be absent.
        optional (sequence[str]): names compiled when present (default: the head's ``simplebaseline_head``,
            the deconv stack of ``IPRHead`` and mmpose's integral heads).
        **compile_kwargs: ``torch.compile`` arguments (``mode``, ``backend``, ``dynamic``, ``fullgraph``).
    """

    # before_run after the NORMAL hooks': mmengine's EMAHook copies the model there, and a copy taken after
    # compilation would keep forwards that run the source model's modules
    priority = 'LOW'

    def __init__(self, modules=('backbone', ), optional=('head.simplebaseline_head', ), **compile_kwargs) -> None:
        self.modules = tuple(modules)
        self.optional = tuple(optional)
        self.compile_kwargs = compile_kwargs

    def before_run(self, runner) -> None:
        model = bare_model(runner)
        for name in compile_modules(model, self.modules, self.optional, **self.compile_kwargs):
            runner.logger.info(f'CompileHook: {name} compiled with {self.compile_kwargs or "default settings"}')


def compile_modules(model: torch.nn.Module, modules, optional=(), **compile_kwargs) -> list:
    """Replace the ``forward`` of each named submodule of ``model`` (and of each ``optional`` one present) by its
    ``torch.compile``-d version, once; returns the names compiled or already compiled. See :class:`CompileHook`.
    """
    names = dict(model.named_modules())
    missing = [name for name in modules if name not in names]
    if missing:
        raise ValueError(f'CompileHook: {missing} are not submodules of {type(model).__name__} '
                         f'(top-level: {[n for n in names if n and "." not in n]})')
    chosen = list(modules) + [n for n in optional if n in names]
    for name in chosen:
        module = names[name]
        if not getattr(module, '_ipr_compiled', False):  # before_run comes once per train/val/test call
            module.forward = torch.compile(module.forward, **compile_kwargs)
            module._ipr_compiled = True
    return chosen
