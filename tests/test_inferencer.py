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
    result = next(inferencer(image, draw_heatmap=True, return_vis=True, vis_out_dir=str(tmp_path)))
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
    assert (tmp_path / '000000000785.jpg').is_file()
    heat = drawn[height:].astype(np.float32)
    assert heat.std() > 1.0  # not a blank panel: the maps differ across the image
