"""Edits that the measuring tools (``tools/benchmark.py``, ``tools/accuracy_study.py``) make alike to a config before
they run it on the synthetic set: no pretrained weights, and loaders of a given size."""
from typing import Any, MutableMapping


def drop_pretrained_weights(model: MutableMapping[str, Any]) -> None:
    """Remove every ``Pretrained`` ``init_cfg`` from the model config ``model`` (in place), and the model's and its
    backbone's own ``init_cfg``: the measuring machines have no network, and the tools compare models trained from
    the same random start (speed does not depend on the weights)."""
    model['init_cfg'] = None
    if 'backbone' in model:
        model['backbone']['init_cfg'] = None
    _drop_pretrained(model)


def _drop_pretrained(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'init_cfg' and 'Pretrained' in str(value):
                node[key] = None
            else:
                _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _drop_pretrained(item)


def size_loader(loader: MutableMapping[str, Any], batch_size: int, workers: int) -> None:
    """Set a dataloader config's batch size and worker count (in place). Without workers, drop what torch's
    ``DataLoader`` refuses then (persistent workers, a prefetch factor); otherwise the config's own settings stay."""
    loader['batch_size'] = batch_size
    loader['num_workers'] = workers
    if workers == 0:
        loader['persistent_workers'] = False
        loader.pop('prefetch_factor', None)
