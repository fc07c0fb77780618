"""The fast data path (ipr_collate + IPRDataPreprocessor + channels-last) computes what the plain path does."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement
from mmpose.registry import DATASETS, MODELS
from mmpose.utils import register_all_modules

import ipr_plugin  # noqa: F401
from ipr_plugin.datasets.collate import LABELS_KEY, CollatedLabels, ipr_collate
from ipr_plugin.models.data_preprocessors.ipr_data_preprocessor import element_to

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'


@pytest.fixture(scope='module')
def setup(coco_sample, repo_root):
    register_all_modules()
    cfg = Config.fromfile(str(repo_root / CONFIG))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # peaked maps, so that any difference in inputs shows in the outputs
        for p in model.head.parameters():
            p.normal_(0, 0.05)
    fast = copy.deepcopy(model)
    fast.data_preprocessor = MODELS.build(dict(cfg.model.data_preprocessor, type='IPRDataPreprocessor',
                                               channels_last=True))
    fast.to(memory_format=torch.channels_last)
    datasets = {}
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader)):
        ds_cfg = dict(loader.dataset, data_root=str(coco_sample))
        if split == 'val':
            ds_cfg['bbox_file'] = str(coco_sample / 'test_coco_det_AP_H_56.json')
        datasets[split] = DATASETS.build(ds_cfg)
    return model, fast, datasets


def _items(dataset, n, seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    return [dataset[i] for i in range(n)]


def test_collate_ships_contiguous_tensors(setup):
    _, _, datasets = setup
    batch = ipr_collate(_items(datasets['train'], 4))
    assert batch['inputs'].shape == (4, 3, 64, 64) and batch['inputs'].dtype == torch.uint8
    assert batch[LABELS_KEY]['keypoint_labels'].shape == (4, 1, 17, 2)
    assert batch[LABELS_KEY]['keypoint_weights'].shape == (4, 1, 17)
    # the samples carry no tensors any more: nothing else needs its own shared-memory segment
    for sample in batch['data_samples']:
        assert isinstance(sample.gt_instance_labels, CollatedLabels) and not sample.gt_instance_labels.keys()
        assert not any(isinstance(v, torch.Tensor) for v in sample.gt_instances.values())


def test_a_head_under_another_preprocessor_names_the_pairing(setup):
    """mmpose's PoseDataPreprocessor drops the stacked labels: a head reading one (mmpose's RegressionHead here)
    gets an error naming ipr_collate and IPRDataPreprocessor, not mmengine's "no attribute '_gt_instance_labels'";
    the stand-in crosses from a loader worker (pickled) as the samples do."""
    import pickle
    _, _, datasets = setup
    batch = pickle.loads(pickle.dumps(ipr_collate(_items(datasets['train'], 2))))
    out = MODELS.build(dict(type='PoseDataPreprocessor'))(batch, training=True)
    head = MODELS.build(dict(type='RegressionHead', in_channels=8, num_joints=17, loss=dict(type='SmoothL1Loss')))
    with pytest.raises(AttributeError, match=r"gt_instance_labels.keypoint_labels: ipr_collate \(the train loader's "
                                             r"collate_fn\) stacked .* only IPRDataPreprocessor hands them back"):
        head.loss((torch.randn(2, 8),), out['data_samples'])
    # under IPRDataPreprocessor the labels are back
    out = MODELS.build(dict(type='IPRDataPreprocessor'))(ipr_collate(_items(datasets['train'], 2)), training=True)
    assert out['data_samples'][0].gt_instance_labels.keypoint_labels.shape == (1, 17, 2)


@pytest.mark.parametrize('which', [0, 1])
def test_labels_with_other_keys_stay_on_their_samples(setup, which):
    """One sample with a label key the others lack (another codec, a custom transform): nothing is stacked and
    nothing is dropped, whichever sample it is."""
    _, _, datasets = setup
    items = _items(datasets['train'], 2)
    items[which]['data_samples'].gt_instance_labels.set_field(torch.full((1, 17), 7.0), 'extra_weights')
    batch = ipr_collate(items)
    assert LABELS_KEY not in batch
    keys = [set(sample.gt_instance_labels.keys()) for sample in batch['data_samples']]
    assert 'extra_weights' in keys[which] and 'extra_weights' not in keys[1 - which]
    assert {'keypoint_labels', 'keypoint_weights'} <= keys[0] & keys[1]


def test_same_losses_as_the_plain_path(setup):
    model, fast, datasets = setup
    items = _items(datasets['train'], 4)
    plain = model.data_preprocessor(pseudo_collate(copy.deepcopy(items)), True)
    quick = fast.data_preprocessor(ipr_collate(copy.deepcopy(items)), True)
    torch.testing.assert_close(quick['inputs'], plain['inputs'], rtol=0, atol=0)
    # the preprocessor converts GPU batches only; the model here is channels-last, so give it such inputs
    quick['inputs'] = quick['inputs'].contiguous(memory_format=torch.channels_last)
    model.train(), fast.train()
    ref = model.loss(plain['inputs'], plain['data_samples'])
    out = fast.loss(quick['inputs'], quick['data_samples'])
    assert set(ref) == set(out)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-6)


def test_same_predictions_and_bounded_bf16_difference(setup):
    model, fast, datasets = setup
    model.eval(), fast.eval()
    items = _items(datasets['val'], 8)
    with torch.no_grad():
        ref = model.test_step(pseudo_collate(copy.deepcopy(items)))
        out = fast.test_step(ipr_collate(copy.deepcopy(items)))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = fast.test_step(ipr_collate(copy.deepcopy(items)))
    bf16_px = 0.0
    for r, o, lo in zip(ref, out, low):
        torch.testing.assert_close(torch.as_tensor(o.pred_instances.keypoints),
                                   torch.as_tensor(r.pred_instances.keypoints), rtol=0, atol=1e-3)
        torch.testing.assert_close(torch.as_tensor(o.pred_instances.keypoint_scores),
                                   torch.as_tensor(r.pred_instances.keypoint_scores), rtol=0, atol=1e-5)
        # bf16 features: keypoints move by a small fraction of the box (stated in BENCHMARKS.md)
        scale = float(r.input_scale.max())
        bf16_px = max(bf16_px, float(abs(lo.pred_instances.keypoints - r.pred_instances.keypoints).max()) / scale)
    assert bf16_px < 0.02, f'bf16 moved a keypoint by {bf16_px:.4f} of the box size'


def test_dataloader_workers_with_the_fast_config(coco_sample, repo_root):
    cfg = Config.fromfile(str(repo_root / CONFIG))
    loader = copy.deepcopy(cfg.train_dataloader)
    loader.update(num_workers=2, persistent_workers=False, collate_fn=dict(type='ipr_collate'))
    loader.dataset.data_root = str(coco_sample)
    register_all_modules()
    batch = next(iter(Runner.build_dataloader(loader)))
    assert batch['inputs'].shape[0] == 4 and LABELS_KEY in batch


def _collate_in_worker(batch):
    out = ipr_collate(batch)
    # whether the worker stacked straight into shared memory (no second copy on the way to the main process)
    tensors = [out['inputs'], *out.get(LABELS_KEY, {}).values()]
    out['stacked_shared'] = [t.is_shared() for t in tensors]
    return out


def test_workers_stack_batches_in_shared_memory_with_the_pipelines_values(setup):
    _, _, datasets = setup
    train = next(iter(torch.utils.data.DataLoader(datasets['train'], batch_size=4, num_workers=1,
                                                  collate_fn=_collate_in_worker)))
    assert len(train['stacked_shared']) > 2 and all(train['stacked_shared'])  # image batch and labels
    batch = next(iter(torch.utils.data.DataLoader(datasets['val'], batch_size=4, num_workers=1,
                                                  collate_fn=_collate_in_worker)))
    assert batch['stacked_shared'] == [True]
    assert torch.equal(batch['inputs'], ipr_collate([datasets['val'][i] for i in range(4)])['inputs'])
    assert not ipr_collate([datasets['val'][i] for i in range(4)])['inputs'].is_shared()  # in-process: plain


def test_channels_last_hook_leaves_a_cpu_model_as_it_is(coco_sample, repo_root, tmp_path):
    """Channels-last is a GPU optimisation; on the CPU torch 2.14.1 crashes training narrow ResNets with it."""
    cfg = Config.fromfile(str(repo_root / CONFIG))
    root = f'{coco_sample}/'
    cfg.val_dataloader.dataset.update(data_root=root, bbox_file=f'{root}test_coco_det_AP_H_56.json', indices=2)
    cfg.val_evaluator.ann_file = f'{root}test_coco.json'
    cfg.model.data_preprocessor = dict(cfg.model.data_preprocessor, type='IPRDataPreprocessor', channels_last=True)
    cfg.custom_hooks = [dict(type='ChannelsLastHook')]
    cfg.default_hooks.pop('checkpoint')  # its save_best needs a train loop
    cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = cfg.param_scheduler = None
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    metrics = runner.val()
    assert 'coco/AP' in metrics
    stem = runner.model.backbone.conv1.weight
    assert stem.is_contiguous() and not stem.is_contiguous(memory_format=torch.channels_last)


def _assert_same_element(ours, ref):
    """Same class, same metainfo and data values, recursively through nested data elements."""
    assert type(ours) is type(ref)
    assert sorted(ours.metainfo_keys()) == sorted(ref.metainfo_keys())
    for key, value in ref.metainfo_items():
        np.testing.assert_equal(getattr(ours, key), value)
    assert sorted(ours.keys()) == sorted(ref.keys())
    for key, value in ref.items():
        mine = getattr(ours, key)
        if isinstance(value, BaseDataElement):
            _assert_same_element(mine, value)
        elif isinstance(value, torch.Tensor):
            assert mine.dtype == value.dtype and mine.device == value.device
            torch.testing.assert_close(mine, value, rtol=0, atol=0)
        else:
            np.testing.assert_equal(mine, value)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_element_to_moves_samples_as_mmengine_does_without_copying_metainfo(setup, split):
    _, _, datasets = setup
    sample = _items(datasets[split], 1)[0]['data_samples']
    assert sample.metainfo_keys() and sample.keys()
    # a dtype move changes every tensor, nested ones included, so a skipped field would show
    for args in (('cpu', ), (torch.float64, )):
        before = copy.deepcopy(sample)
        moved, ref = element_to(sample, *args), sample.to(*args)
        _assert_same_element(moved, ref)
        _assert_same_element(sample, before)  # the original is left as it was
        for key, value in sample.metainfo_items():
            assert getattr(moved, key) is value  # shared, not copied
    if split == 'train':
        labels = element_to(sample, torch.float64).gt_instance_labels.keypoint_labels
        assert labels.dtype == torch.float64 and sample.gt_instance_labels.keypoint_labels.dtype == torch.float32


@pytest.mark.parametrize('split', ['train', 'val'])
def test_preprocessor_gives_the_plain_paths_samples_without_metainfo_copies(setup, split):
    model, fast, datasets = setup
    items = _items(datasets[split], 4)
    training = split == 'train'
    plain = model.data_preprocessor(pseudo_collate(copy.deepcopy(items)), training)
    batch = ipr_collate(copy.deepcopy(items))
    flip_indices = [s.flip_indices for s in batch['data_samples']]  # a list: a deep copy would be a new one
    quick = fast.data_preprocessor(batch, training)
    # every metainfo value equal, pad_shape included (mmpose's own preprocessor gets (C, H) for stacked batches)
    for q, p, indices in zip(quick['data_samples'], plain['data_samples'], flip_indices):
        _assert_same_element(q, p)
        assert q.flip_indices is indices  # shared: mmengine's BaseDataElement.to would have deep-copied it


def test_batch_augments_see_the_stacked_labels_as_with_the_plain_path():
    """mmpose's BatchSyncRandomResize rescales the samples' labels in place: with ipr_collate they must be back on
    the samples when it runs, or the images shrink and the labels keep their old scale."""
    from mmengine.logging import MessageHub
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample
    register_all_modules()
    MessageHub.get_current_instance().update_info('iter', 0)
    items = []
    for i in range(2):  # the same number of people in each: ipr_collate stacks the labels
        sample = PoseDataSample(metainfo=dict(img_shape=(64, 64)))
        sample.gt_instance_labels = InstanceData(keypoints=torch.full((2, 17, 2), 40.0 + i),
                                                 bboxes=torch.tensor([[8., 8., 48., 48.], [0., 0., 60., 60.]]))
        items.append(dict(inputs=torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), data_samples=sample))
    assert LABELS_KEY in ipr_collate(copy.deepcopy(items))
    out = {}
    for kind, collate in (('PoseDataPreprocessor', pseudo_collate), ('IPRDataPreprocessor', ipr_collate)):
        resize = dict(type='BatchSyncRandomResize', random_size_range=(32, 32), interval=1000, size_divisor=32)
        preprocessor = MODELS.build(dict(type=kind, batch_augments=[resize]))
        preprocessor.batch_augments[0]._input_size = (32, 32)  # a size drawn before: halves the 64x64 batch
        out[kind] = preprocessor(collate(copy.deepcopy(items)), True)
    plain, fast = out['PoseDataPreprocessor'], out['IPRDataPreprocessor']
    assert fast['inputs'].shape == plain['inputs'].shape == (2, 3, 32, 32)
    for p, f in zip(plain['data_samples'], fast['data_samples']):
        for key in ('keypoints', 'bboxes'):
            torch.testing.assert_close(f.gt_instance_labels[key], p.gt_instance_labels[key], rtol=0, atol=0)
    assert fast['data_samples'][0].gt_instance_labels.keypoints[0, 0].tolist() == [20.0, 20.0]


def test_a_batch_without_three_channels_is_refused_by_name():
    """bgr_to_rgb on a grayscale batch: mmengine refuses the per-sample list with a shape assertion, but indexes
    channel 2 of a stacked batch (IndexError); ours names the batch and the likely cause."""
    from mmpose.structures import PoseDataSample
    sample = PoseDataSample(metainfo=dict(img_shape=(16, 16)))
    items = [dict(inputs=torch.zeros(1, 16, 16, dtype=torch.uint8), data_samples=copy.deepcopy(sample))
             for _ in range(2)]
    preprocessor = MODELS.build(dict(type='IPRDataPreprocessor', bgr_to_rgb=True))
    with pytest.raises(ValueError, match=r'needs 3-channel images, the batch \(2, 1, 16, 16\) has 1 \(a LoadImage'):
        preprocessor(ipr_collate(items), True)
    # a list (pseudo_collate, as mmpose's inference_topdown batches a grayscale array): the same, not an IndexError
    with pytest.raises(ValueError, match=r'an image of the batch \(1, 16, 16\) has 1 .* grayscale array'):
        preprocessor(pseudo_collate(copy.deepcopy(items)), False)


def test_a_bgra_batch_becomes_rgb_as_with_mmposes_preprocessor():
    """Four channels (a PNG loaded with color_type='unchanged'): mmengine's channel flip keeps B, G, R as R, G, B
    and drops alpha, stacked or not."""
    from mmpose.structures import PoseDataSample
    images = torch.randint(0, 256, (2, 4, 16, 16), dtype=torch.uint8)
    items = [dict(inputs=image, data_samples=PoseDataSample(metainfo=dict(img_shape=(16, 16)))) for image in images]
    cfg = dict(bgr_to_rgb=True, mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
    theirs = MODELS.build(dict(type='PoseDataPreprocessor', **cfg))(pseudo_collate(copy.deepcopy(items)), True)
    ours = MODELS.build(dict(type='IPRDataPreprocessor', **cfg))
    for collate in (ipr_collate, pseudo_collate):  # a stacked batch, and the test loader's list of images
        out = ours(collate(copy.deepcopy(items)), True)
        assert out['inputs'].shape == (2, 3, 16, 16)
        torch.testing.assert_close(out['inputs'], theirs['inputs'], rtol=0, atol=0)


def test_a_multilevel_field_is_moved_by_its_own_to():
    """mmpose's MultilevelPixelData (MSPN / RSN targets) keeps lists of tensors, which only its own ``to`` moves."""
    from mmpose.structures import MultilevelPixelData, PoseDataSample
    fields = MultilevelPixelData()
    fields.heatmaps = [torch.zeros(3, 8, 6), torch.zeros(3, 4, 3)]
    sample = PoseDataSample(metainfo=dict(img_shape=(16, 16)))
    sample.gt_fields = fields
    moved, ref = element_to(sample, torch.float64), sample.to(torch.float64)
    assert [h.dtype for h in moved.gt_fields.heatmaps] == [h.dtype for h in ref.gt_fields.heatmaps] \
        == [torch.float64] * 2
