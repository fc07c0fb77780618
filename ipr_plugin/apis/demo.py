"""The project's main job: write the synthetic COCO-layout set, measure the untrained model, train it with
``mim train`` (on the GPU where there is one, as mmengine chooses), measure it again with ``mim test`` (detector
boxes), and draw its predictions."""
import contextlib
import re
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Union

from ..arguments import raise_problems, write_json
from ..locks import own_folder
from ..paths import load_config, plugin_config, work_root
from .mim_runner import parse_coco_metrics, progress_line, run_mim

DEMO_CONFIG = plugin_config('synthetic', 'ipr_res18-w16_1xb32-60e_synthetic-128x128.py')
DEFAULT_WORK_DIR = work_root() / 'work_dirs' / 'demo'
DEFAULT_DATA_ROOT = work_root() / 'data' / 'synthetic'
DEMO_IMAGE_SIZE = (320, 240)


def save_untrained_checkpoint(config: Path, out_file: Path, seed: int = 0) -> Path:
    """Save the model as initialised (what training starts from), for measuring the untrained AP."""
    import torch
    from mmengine.config import Config
    from mmengine.runner import set_random_seed
    from mmpose.registry import MODELS
    from mmpose.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(config))
    set_random_seed(seed)
    model = MODELS.build(cfg.model)
    with _mmengine_quiet():  # init_weights reports every parameter at INFO; the user needs none of it
        model.init_weights()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(note='untrained (initial) weights')), out_file)
    return out_file


@contextlib.contextmanager
def _mmengine_quiet() -> Iterator[None]:
    """mmengine's current logger at WARNING while the block runs: its INFO lines would break into the demo's
    own progress lines."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        yield
    finally:
        logger.setLevel(level)


def data_config(config: Path, data: Dict, out_file: Path) -> Path:
    """Write a config inheriting ``config`` with its loaders and metrics pointed at the dataset just written.

    A file, not ``--cfg-options``: mmengine's option parser deletes the spaces in a value and splits it at
    commas, so a data folder like ``~/My Projects/`` would become another path.
    """
    root = f'{data["root"]}/'
    val = dict(dataset=dict(data_root=root, bbox_file=data['bbox_file']))
    evaluator = dict(ann_file=data['val_ann_file'])
    lines = [f'_base_ = [{str(Path(config).resolve())!r}]',
             f'train_dataloader = {dict(dataset=dict(data_root=root))!r}']
    lines += [f'{split}_dataloader = {val!r}\n{split}_evaluator = {evaluator!r}' for split in ('val', 'test')]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text('# the demo config on the dataset the demo wrote\n' + '\n'.join(lines) + '\n')
    return out_file


def _progress(say: Callable[[str], None], epochs: int) -> Callable[[str], None]:
    """Forward mmengine's per-interval training and evaluation lines (:func:`progress_line`), the training
    epoch out of ``epochs`` (``Epoch(train) [6/60][20/24]``): mmengine's ``[6][20/24]`` says nothing of the end."""
    def on_line(line: str) -> None:
        if 'Epoch(train)' in line or 'Epoch(val)' in line:
            say('    ' + re.sub(r'^Epoch\(train\)\s*\[\s*(\d+)\]', rf'Epoch(train) [\1/{epochs}]', progress_line(line)))
    return on_line


def demo_argument_problems(num_train: int, num_val: int, epochs: Optional[int]) -> Dict[str, str]:
    """What is wrong with :func:`run_demo`'s counts, by argument name: each would otherwise fail minutes later,
    inside mmengine (an empty training set, no val image to measure, no epoch and so no checkpoint)."""
    problems = {}
    for name, value in (('num_train', num_train), ('num_val', num_val), ('epochs', epochs)):
        if value is not None and (int(value) != value or value < 1):
            problems[name] = f'must be at least 1, got {value}'
    return problems


def run_demo(work_dir: Union[str, Path] = DEFAULT_WORK_DIR,
             data_root: Union[str, Path] = DEFAULT_DATA_ROOT,
             config: Path = DEMO_CONFIG,
             num_train: int = 300,
             num_val: int = 40,
             epochs: Optional[int] = None,
             seed: int = 0,
             say: Callable[[str], None] = print) -> Dict:
    """Run the whole job and return its numbers (also written to ``work_dir/demo_results.json``). Relative
    ``work_dir`` and ``data_root`` are taken from the current folder, as any command line takes them.

    Raises:
        FolderInUse: another demo uses ``work_dir`` now, or another run uses a set written otherwise in
            ``data_root``.
    """
    from ..datasets.synthetic_sets import stamped_set

    raise_problems(demo_argument_problems(num_train, num_val, epochs))
    started = time.monotonic()
    work, data_root = Path(work_dir).resolve(), Path(data_root).resolve()
    # another demo in the same folders would overwrite this one's checkpoints and rewrite its data under it
    with own_folder(str(work), 'demo'), stamped_set(
            str(data_root), 'demo_data.json',
            announce=lambda: say(f'[1/5] writing the synthetic COCO-layout dataset to {data_root}/'),
            num_train=num_train, num_val=num_val, image_size=DEMO_IMAGE_SIZE, seed=seed) as (data, reused):
        if reused:
            say(f'[1/5] reusing the synthetic COCO-layout dataset in {data_root}/ (written with these settings)')
        return _run_demo(work, data, config, epochs, seed, say, started)


def _run_demo(work: Path, data: Dict, config: Path, epochs: Optional[int], seed: int, say: Callable[[str], None],
              started: float) -> Dict:
    """:func:`run_demo` once its work folder and its synthetic set (``data``) are its own."""
    say(f'      {data["num_train_instances"]} training people, {data["num_val_instances"]} val people, '
        f'{data["num_detections"]} detector boxes')
    run_config = data_config(config, data, work / 'demo_config.py')
    options = [f'randomness.seed={seed}']
    if epochs is not None:
        options += [f'train_cfg.max_epochs={epochs}', f'param_scheduler.1.end={epochs}',
                    f'param_scheduler.1.T_max={epochs}']

    def coco_metrics(checkpoint, name: str) -> Dict[str, float]:
        out = run_mim(['test', 'mmpose', run_config, '--checkpoint', checkpoint, '--work-dir', work / f'test_{name}',
                       '--cfg-options', *options], timeout=900).stdout
        return parse_coco_metrics(out)

    say('[2/5] COCO AP of the untrained model (mim test, detector boxes)')
    before = coco_metrics(save_untrained_checkpoint(config, work / 'untrained.pth', seed), 'untrained')
    say(f'      AP {before.get("coco/AP", float("nan")):.3f}')

    import torch  # mmengine trains on the GPU where there is one
    total = epochs if epochs is not None else load_config(run_config).train_cfg.max_epochs
    say(f'[3/5] training, {total} epochs (mim train mmpose, {"GPU" if torch.cuda.is_available() else "CPU"})')
    run_mim(['train', 'mmpose', run_config, '--work-dir', work, '--cfg-options', *options], timeout=3600,
            on_line=_progress(say, total))
    checkpoint = (work / 'last_checkpoint').read_text().strip()

    say('[4/5] COCO AP of the trained model (mim test, detector boxes)')
    after = coco_metrics(checkpoint, 'trained')
    say(f'      AP {after.get("coco/AP", float("nan")):.3f}')

    say('[5/5] drawing predictions with mmpose\'s visualizer')
    from .visualize import draw_predictions
    with _mmengine_quiet():  # mmengine's line on loading the checkpoint
        pictures = draw_predictions(config, checkpoint, data['val_ann_file'], data['val_img_dir'],
                                    data['bbox_file'], work / 'predictions')

    results = dict(untrained=before, trained=after, checkpoint=checkpoint, pictures=pictures,
                   seconds=round(time.monotonic() - started, 1), config=str(config))
    write_json(str(work / 'demo_results.json'), results, indent=2)
    say('')
    say(f'{"":12s}{"AP":>7s}{"AP50":>7s}{"AP75":>7s}{"AR":>7s}')
    for name, m in (('untrained', before), ('trained', after)):
        say(f'{name:12s}' + ''.join(f'{m.get(k, float("nan")):7.3f}'
                                    for k in ('coco/AP', 'coco/AP .5', 'coco/AP .75', 'coco/AR')))
    say(f'\npredictions drawn on {len(pictures)} val images in {work / "predictions"}')
    say(f'checkpoint: {checkpoint}\ntraining log: {_training_log(work)}\nresults: {work / "demo_results.json"}')
    say(f'finished in {results["seconds"]:.0f} s')
    return results


def _training_log(work: Path) -> str:
    """mmengine's log of the last training in ``work`` (``work/<timestamp>/<timestamp>.log``)."""
    logs = sorted(work.glob('[0-9]*_[0-9]*/[0-9]*_[0-9]*.log'))
    return str(logs[-1]) if logs else f'{work}/<timestamp>/'
