"""mmpose's high-level ``MMPoseInferencer`` (behind ``demo/inferencer_demo.py``) takes our config and checkpoint
as it takes mmpose's own: the same keypoints as ``inference_topdown``, and ``draw_heatmap`` draws our maps."""
import numpy as np
import pytest
import torch
from mmengine.runner import save_checkpoint

CONFIG = 'configs/sample/ipr_res18_coco-sample-64x64.py'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """Weights of a model built from CONFIG (random, so that both paths below must load the same file)."""
    from mmpose.apis import init_model
    torch.manual_seed(0)
    model = init_model(CONFIG, None, device='cpu')
    path = tmp_path_factory.mktemp('ckpt') / 'ipr.pth'
    save_checkpoint(model.state_dict(), str(path))
    return str(path)


def test_the_inferencer_predicts_what_inference_topdown_does_and_draws_our_maps(coco_sample, checkpoint, tmp_path):
    import mmcv
    from mmpose.apis import MMPoseInferencer, inference_topdown, init_model
    image = str(coco_sample / '000000000785.jpg')
    height, width = mmcv.imread(image).shape[:2]
    # 'whole_image': the image as the one person box, as no detector weights can be fetched here
    inferencer = MMPoseInferencer(pose2d=CONFIG, pose2d_weights=checkpoint, det_model='whole_image', device='cpu')
    # kpt_thr=0 as in the README: our scores are probability masses, mostly under mmpose's default of 0.3
    result = next(inferencer(image, draw_heatmap=True, return_vis=True, vis_out_dir=str(tmp_path), kpt_thr=0))
    [person] = result['predictions'][0]
    keypoints, scores = np.asarray(person['keypoints']), np.asarray(person['keypoint_scores'])

    model = init_model(CONFIG, checkpoint, device='cpu')
    [expected] = inference_topdown(model, image)  # its default box is the whole image too
    np.testing.assert_allclose(keypoints, expected.pred_instances.keypoints[0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(scores, expected.pred_instances.keypoint_scores[0], rtol=0, atol=1e-6)
    assert keypoints.shape == (17, 2) and ((scores >= 0) & (scores <= 1)).all()
    assert person['bbox'] == ([0.0, 0.0, float(width), float(height)], )

    # mmpose's visualizer draws the heatmaps under the image: ours are (K, H, W) maps it can draw
    [drawn] = result['visualization']
    assert drawn.shape == (2 * height, width, 3)
    assert scores.max() < 0.3  # random weights: mmpose's default threshold would draw no keypoint at all
    # the keypoints are drawn on the image (random weights put all 17 near the centre: one small blob, which
    # mmpose's default threshold leaves out, so the picture would equal the image)
    assert (drawn[:height] != mmcv.imread(image, channel_order='rgb')).any()
    assert (tmp_path / '000000000785.jpg').is_file()
    heat = drawn[height:].astype(np.float32)
    assert heat.std() > 1.0  # not a blank panel: the maps differ across the image


def test_without_det_model_the_inferencer_builds_mmposes_person_detector_for_our_dataset(monkeypatch):
    """mmpose picks the default detector from the dataset class's module path (``datasets.body`` -> people);
    elsewhere it would silently take the whole image as the one person. Its RTMDet config is built with random
    weights here (the zoo's weights cannot be fetched): what is checked is that a detector is built at all."""
    from mmdet.apis import DetInferencer
    from mmpose.apis import MMPoseInferencer
    from mmpose.apis.inferencers import base_mmpose_inferencer
    person = dict(base_mmpose_inferencer.default_det_models['body'], weights=None)
    monkeypatch.setitem(base_mmpose_inferencer.default_det_models, 'body', person)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpose'):  # building mmdet's detector makes 'mmdet' the scope
        inferencer = MMPoseInferencer(pose2d=CONFIG, device='cpu')
    assert isinstance(inferencer.inferencer.detector, DetInferencer)


def test_the_fast_config_serves_the_inferencer_with_the_plain_configs_predictions(coco_sample, tmp_path):
    """mmengine's inferencer reads test_dataloader.collate_fn as a registry name: the fast config tests with
    pseudo_collate so that it builds; on the same weights it predicts what the main config does (same pixels from
    IPRLoadImage, same normalisation in IPRDataPreprocessor)."""
    from mmpose.apis import MMPoseInferencer, init_model
    torch.manual_seed(0)
    path = tmp_path / 'r50.pth'
    save_checkpoint(init_model('configs/ipr_res50_8xb64-210e_coco-256x256.py', None, device='cpu').state_dict(),
                    str(path))
    image = str(coco_sample / '000000000785.jpg')
    predictions = {}
    for name in ('ipr_res50_8xb64-210e_coco-256x256', 'ipr_res50_fast-8xb64-210e_coco-256x256'):
        inferencer = MMPoseInferencer(pose2d=f'configs/{name}.py', pose2d_weights=str(path), det_model='whole_image',
                                      device='cpu')
        [person] = next(inferencer(image))['predictions'][0]
        predictions[name] = np.asarray(person['keypoints']), np.asarray(person['keypoint_scores'])
    (plain, plain_scores), (fast, fast_scores) = predictions.values()
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-3)
    np.testing.assert_allclose(fast_scores, plain_scores, rtol=0, atol=1e-5)
