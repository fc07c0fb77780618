"""mmpose's ``CocoDataset`` with input checks that fail early, with one clear error naming the culprit.

mmpose itself reports a missing file as a bare path from deep inside loading, a missing image folder only when
the first image fails to read (in a dataloader worker), and an annotation file with another keypoint count not at
all: it loads, then shapes disagree somewhere in the head or the metric. Here:

- a missing ``data_root``, annotation file, image folder or detection file raises ``FileNotFoundError`` naming
  the path and the config key it came from;
- an annotation file whose instances do not have the metainfo's keypoint count (17 for COCO) raises
  ``ValueError`` naming the file, the count found and the count expected.

It also hands out each sample's metainfo entries more cheaply (see :meth:`IPRCocoDataset.get_data_info`).
"""
import copy
import os.path as osp
import pickle
from typing import Dict, Optional

from mmengine.dataset import BaseDataset
from mmengine.fileio import load
from mmpose.datasets import CocoDataset
from mmpose.registry import DATASETS

# The metainfo entries mmpose's BaseCocoStyleDataset.get_data_info adds to every sample for the pipeline.
_SAMPLE_METAINFO = ('dataset_name', 'upper_body_ids', 'lower_body_ids', 'flip_pairs', 'dataset_keypoint_weights',
                    'flip_indices', 'skeleton_links')


def _is_remote(path: str) -> bool:
    # mmengine file backends (s3://, http://, ...) cannot be checked with os.path; loading will report them.
    return '://' in path


@DATASETS.register_module()
class IPRCocoDataset(CocoDataset):
    """``mmpose.datasets.CocoDataset`` that checks its inputs before loading; same arguments and behaviour.

    Args:
        ann_file: annotation file, relative to ``data_root`` unless absolute.
        bbox_file: person detection results for top-down testing; used as given (mmpose does not join it with
            ``data_root``).
        data_root: root of ``ann_file`` and ``data_prefix``.
        data_prefix: ``dict(img=folder)``, the image folder relative to ``data_root`` unless absolute.
        **kwargs: the other arguments of ``CocoDataset`` (``data_mode``, ``test_mode``, ``pipeline``, ...).

    Raises:
        FileNotFoundError: at load time, for a missing ``data_root``, annotation file, image folder or detection
            file.
        ValueError: at load time, for an annotation file whose keypoint count differs from the metainfo's.
    """

    def __init__(self, ann_file: str = '', bbox_file: Optional[str] = None, data_root: Optional[str] = None,
                 data_prefix: Optional[Dict[str, str]] = None, **kwargs) -> None:
        data_prefix = dict(img='') if data_prefix is None else data_prefix
        # The values as written in the config; mmengine joins them with data_root before loading and the error
        # messages show both, since the config is what the user has to fix.
        self._config_paths = dict(ann_file=ann_file, bbox_file=bbox_file, data_root=data_root,
                                  data_prefix=copy.deepcopy(data_prefix))
        super().__init__(ann_file=ann_file, bbox_file=bbox_file, data_root=data_root, data_prefix=data_prefix,
                         **kwargs)

    def get_data_info(self, idx: int) -> dict:
        """The sample ``idx`` as mmpose's ``get_data_info`` gives it, with fresh copies of the metainfo entries.

        mmpose deep-copies seven metainfo entries for every sample; unpickling one stored snapshot of them
        gives equal, equally independent copies for less (``BENCHMARKS.md``: ``get_data_info`` 0.12 -> 0.06 ms
        per sample). The dataset's metainfo does not change after construction.
        """
        data_info = BaseDataset.get_data_info(self, idx)
        if getattr(self, '_sample_metainfo', None) is None:
            self._sample_metainfo = pickle.dumps({key: self._metainfo[key] for key in _SAMPLE_METAINFO})
        for key in _SAMPLE_METAINFO:
            if key in data_info:  # as mmpose: these names are reserved
                raise KeyError(f'IPRCocoDataset: "{key}" is a reserved key for `metainfo`, but the sample '
                               f'{idx} already has it')
        data_info.update(pickle.loads(self._sample_metainfo))
        return data_info

    def load_data_list(self) -> list:
        """Check the inputs, then load as ``CocoDataset`` does."""
        self._check_paths()
        if self.bbox_file:
            # Detection results bring their own boxes and dummy keypoints: nothing of the annotation file goes
            # through parse_data_info, so its keypoint count is checked here (val files are small).
            self._check_file_keypoint_count()
        return super().load_data_list()

    def parse_data_info(self, raw_data_info: dict) -> Optional[dict]:
        """``CocoDataset.parse_data_info`` after checking the instance's keypoint count.

        Checking each instance as it is parsed costs one ``len`` and no second read of the (possibly large,
        e.g. 240 MB for COCO train) annotation file.
        """
        self._check_instance_keypoint_count(raw_data_info['raw_ann_info'])
        return super().parse_data_info(raw_data_info)

    # -- checks ------------------------------------------------------------------------------------------------

    def _where(self, key: str, raw: Optional[str], joined: bool = True) -> str:
        """Where a checked path came from: its config key and value, and the data_root it was joined with."""
        text = f'config key {key}={raw!r}'
        if joined and raw and not osp.isabs(raw) and self.data_root:
            text += f', joined with data_root={self.data_root!r}'
        return text

    def _check_paths(self) -> None:
        name, cfg = type(self).__name__, self._config_paths
        root = self.data_root
        if root and not _is_remote(root) and not osp.isdir(root):
            raise FileNotFoundError(f'{name}: data_root not found: {osp.abspath(root)} (config key '
                                    f'data_root={cfg["data_root"]!r})')
        if not self.ann_file:
            raise FileNotFoundError(f'{name}: no annotation file given (config key ann_file is empty)')
        if not _is_remote(self.ann_file) and not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'{name}: annotation file not found: {osp.abspath(self.ann_file)} '
                                    f'({self._where("ann_file", cfg["ann_file"])})')
        img_dir = self.data_prefix.get('img', '')
        if img_dir and not _is_remote(img_dir) and not osp.isdir(img_dir):
            raise FileNotFoundError(f'{name}: image folder not found: {osp.abspath(img_dir)} '
                                    f'({self._where("data_prefix.img", cfg["data_prefix"].get("img"))})')
        if self.bbox_file and not _is_remote(self.bbox_file) and not osp.isfile(self.bbox_file):
            hint = ''
            if root and osp.isfile(osp.join(root, self.bbox_file)):
                hint = f'; {osp.join(root, self.bbox_file)} exists: give bbox_file that full path'
            where = self._where('bbox_file', cfg['bbox_file'], joined=False)
            raise FileNotFoundError(f'{name}: detection (bbox) file not found: {osp.abspath(self.bbox_file)} '
                                    f'({where}, used as given: mmpose does not join bbox_file with data_root{hint})')

    def _keypoint_count_error(self, what: str, found: str) -> ValueError:
        expected = self.metainfo['num_keypoints']
        return ValueError(f'{type(self).__name__}: annotation file {self.ann_file}: {what} has {found} but the '
                          f'dataset metainfo ({self.metainfo.get("dataset_name", "?")}) expects {expected} '
                          f'keypoints; give a metainfo matching the file (metainfo=dict(from_file=...)) or the '
                          f'annotation file matching the metainfo')

    def _check_instance_keypoint_count(self, ann: dict) -> None:
        values = ann.get('keypoints')
        if values is None:  # no keypoints at all: CocoDataset skips the instance
            return
        if len(values) != 3 * self.metainfo['num_keypoints']:
            found = f'{len(values) // 3} keypoints' if len(values) % 3 == 0 else \
                f'{len(values)} keypoint values, not (x, y, visibility) triplets'
            raise self._keypoint_count_error(f'annotation id {ann.get("id")} (image {ann.get("image_id")})', found)

    def _check_file_keypoint_count(self) -> None:
        data = load(self.ann_file)
        expected = self.metainfo['num_keypoints']
        for cat in data.get('categories', []):
            if 'keypoints' in cat and len(cat['keypoints']) != expected:
                raise self._keypoint_count_error(f'category {cat.get("name")!r}',
                                                 f'{len(cat["keypoints"])} keypoint names')
        for ann in data.get('annotations', []):
            if ann.get('keypoints') is not None:
                self._check_instance_keypoint_count(ann)
                return
