"""IPRHead's checks of what a config and its inputs give it (``head_inputs.py``): arguments it refuses, labels of
mmpose's other codecs, inputs of mmpose's other configs, crops, maps and checkpoints that do not fit, a dataset with
another keypoint count."""
import pytest
import torch
from heads import FLIP, INPUT, H, K, W, centred_labels, logit_head, samples
from mmengine.structures import InstanceData
from mmpose.registry import MODELS

import ipr_plugin  # noqa: F401


@pytest.mark.parametrize('option, value', [('beta', 0.0), ('beta', -1.0), ('beta', float('nan')),
                                           ('score_radius', 0), ('score_radius', -1.0),
                                           ('score_radius', float('inf')), ('normalizer', 'sigmoid')])
def test_options_that_would_train_or_test_silently_wrong_are_refused(option, value):
    with pytest.raises(ValueError, match=f'IPRHead: `{option}` must be'):
        logit_head(**{option: value})
    # learnable beta starts from softplus^-1(beta), undefined at 0: the same message, not a math domain error
    with pytest.raises(ValueError, match='IPRHead: `beta` must be'):
        logit_head(beta=0.0, learnable_beta=True)


@pytest.mark.parametrize('options, words', [
    (dict(in_channels=[256, 512]), r'IPRHead takes one feature map: `in_channels` must be an int, got \[256, 512\]'),
    (dict(in_featuremap_size=8), r'`in_featuremap_size` must be \(w, h\) of the last feature map, .*got 8$'),
    (dict(in_featuremap_size=(6, 8, 1)), r'`in_featuremap_size` must be \(w, h\) .*got \(6, 8, 1\)$'),
    (dict(in_featuremap_size=(6.25, 8)), r'`in_featuremap_size` must be \(w, h\) .*got \(6.25, 8\)$'),
    (dict(grid='centre'), r"IPRHead: `grid` must be one of .*, got 'centre'"),
    (dict(grid='mmpose', decoder=None), r"grid='mmpose' needs `decoder`"),
    (dict(debias=True, debias_max_background=1.0), r'`debias_max_background` must be in \(0, 1\), got 1.0'),
    (dict(loss=dict(type='IntegralL1Loss', loss_name='kpt')), 'IntegralL1Loss: `loss_name` must contain "loss"')])
def test_settings_the_head_would_fail_on_later_are_refused_as_it_is_built(options, words):
    """Each would fail later (at the first step, or at validation) or train without a word: a misspelt grid,
    a multi-scale in_channels, a feature map size that is not (w, h) (a bare int or three numbers failed on
    iterating or unpacking, 200 / 32 was cut to 6), mmpose's grid with nothing to say the input size, a loss
    mmengine would not optimise."""
    with pytest.raises(ValueError, match=words):
        logit_head(**options)


def test_a_flip_test_without_the_flipped_features_is_named():
    with pytest.raises(ValueError, match=r'flip_test expects feats = \[feats, flipped_feats\]'):
        logit_head().predict((torch.zeros(1, K, H, W),), samples(1), dict(flip_test=True))


@pytest.mark.parametrize('final_layer, kernel', [(dict(kernel_size=1), 1), (dict(kernel_size=3, padding=1), 3)])
def test_head_without_a_deconv_stack_has_its_final_conv(final_layer, kernel):
    head = MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K,
                             deconv_out_channels=None, final_layer=final_layer,
                             decoder=dict(type='DSNTLabel', input_size=INPUT)))
    assert head.final_layer.kernel_size == (kernel, kernel) and head.heatmap_size == (W, H)
    coords, maps = head((torch.randn(2, 32, H, W),))
    assert coords.shape == (2, K, 2) and maps.shape == (2, K, H, W)


def test_bad_input_names_the_tensor():
    head = logit_head()
    with pytest.raises(ValueError, match=r'keypoint_labels.*\(2, 4, 2\)'):
        head.loss((torch.randn(2, K, H, W),), samples(2, torch.rand(2, 4, 2)))
    with pytest.raises(ValueError, match=r'logits.*\(2, 3, 16, 12\)'):
        head((torch.randn(2, 3, H, W),))
    bad = torch.randn(1, K, H, W)
    bad[0, 1, 2, 3] = float('nan')
    with pytest.raises(ValueError, match=r'logits of shape \(1, 5, 16, 12\).*NaN'):
        head.predict((bad,), samples(1))
    for pair in ([(bad, ), (bad.nan_to_num(), )], [(bad.nan_to_num(), ), (bad, )]):  # either flip-test pass
        with pytest.raises(ValueError, match=r'logits of shape \(1, 5, 16, 12\).*NaN'):
            head.predict(pair, samples(1), dict(flip_test=True))
    with pytest.raises(ValueError, match='debias'):
        logit_head(debias=True, normalizer='relu')


def test_a_misspelt_keypoint_score_mode_is_refused():
    logits = torch.randn(1, K, H, W)
    assert (logit_head().predict((logits,), samples(1), dict(keypoint_scores='ones'))[0].keypoint_scores == 1).all()
    with pytest.raises(ValueError, match=r"keypoint_scores'\] must be 'mass' or 'ones', got 'one'"):
        logit_head().predict((logits,), samples(1), dict(keypoint_scores='one'))


@pytest.mark.parametrize('codec', ['DSNTLabel', 'IntegralRegressionLabel', 'RegressionLabel'])
def test_labels_of_mmposes_integral_codec_are_refused_on_the_first_batch(codec):
    """A config inheriting one of mmpose's integral configs keeps its pipelines' IntegralRegressionLabel (its
    td-reg configs, RegressionLabel), whose labels run over [0, 1] from the input's corner: trained on them, the
    head would learn points shifted by half the input, without an error. The error names the codec of either."""
    labels = centred_labels(codec, 8)
    head = logit_head()
    batch = ((torch.randn(8, K, H, W),), samples(8, labels))
    if codec == 'DSNTLabel':
        assert torch.isfinite(head.loss(*batch)['loss_kpt'])
        return
    with pytest.raises(ValueError, match=r"none of the first 40 labelled keypoints of training has a negative "
                                         r"label, as in the convention of mmpose's IntegralRegressionLabel and "
                                         r"RegressionLabel .* one of mmpose's integral or regression configs"):
        head.loss(*batch)


@pytest.mark.parametrize('codec', ['DSNTLabel', 'IntegralRegressionLabel'])
def test_batches_of_one_person_are_checked_together(codec):
    """With one person per batch (5 keypoints here) the first batches are counted together: mmpose's labels are
    refused on the batch that brings the count to 32, the 7th; DSNT labels train on."""
    labels = centred_labels(codec, 10)
    head = logit_head()
    for i in range(10):
        batch = ((torch.randn(1, K, H, W),), samples(1, labels[i:i + 1]))
        if codec == 'IntegralRegressionLabel' and i == 6:
            with pytest.raises(ValueError, match='none of the first 35 labelled keypoints'):
                head.loss(*batch)
            return
        assert torch.isfinite(head.loss(*batch)['loss_kpt'])
    assert codec == 'DSNTLabel'


def test_inputs_from_other_mmpose_configs_are_refused_naming_the_change():
    """What a config written on one of mmpose's bases may still bring: a pooling neck (its regression configs), a
    loss for a predicted sigma (RLE), heatmap or SimCC targets (its heatmap and RTMPose pipelines, also after a
    PipelineSwitchHook's switch), a dataset of another keypoint count."""
    with pytest.raises(ValueError, match=r'takes \(B, C, H, W\) feature maps, got shape \(2, 5\): .* model.neck=None'):
        logit_head().predict((torch.randn(2, K),), samples(2))
    with pytest.raises(ValueError, match=r"RLELoss takes a predicted sigma .* use dict\(type='IntegralL1Loss'\)"):
        logit_head(loss=dict(type='RLELoss'))
    heatmap_samples = samples(2)
    for sample in heatmap_samples:
        sample.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, K))
    with pytest.raises(ValueError, match=r"gt_instance_labels hold \['keypoint_weights'\], not keypoint_labels .*"
                                         r"DSNTLabel.*switch_pipeline"):
        logit_head().loss((torch.randn(2, K, H, W),), heatmap_samples)
    other_dataset = samples(2)
    for sample in other_dataset:
        sample.set_metainfo(dict(flip_indices=FLIP[:4]))
    with pytest.raises(ValueError, match='the dataset has 4 keypoints .*, the head predicts 5: does model.head'):
        logit_head().predict([(torch.randn(2, K, H, W),)] * 2, other_dataset, dict(flip_test=True))


def test_without_flip_test_a_dataset_of_another_keypoint_count_is_warned_of_once(monkeypatch):
    """An evaluator's pred_converter may map the head's keypoints onto the dataset's (mmpose's CocoMetric takes
    one): predicted, with one warning that names the mismatch."""
    import ipr_plugin.models.heads.ipr_head as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda message, **kwargs: logged.append(message))
    other_dataset = samples(2)
    for sample in other_dataset:
        sample.set_metainfo(dict(flip_indices=FLIP[:4]))
    head = logit_head()
    for _ in range(2):
        preds = head.predict((torch.randn(2, K, H, W),), other_dataset, dict(flip_test=False))
        assert preds[0].keypoints.shape == (1, K, 2)
    [message] = logged
    assert 'the dataset has 4 keypoints (its flip_indices), the head predicts 5' in message
    assert 'pred_converter' in message


def test_a_pipeline_cropping_at_another_size_than_the_decoder_is_refused_in_training_and_prediction():
    """A child config that changes the codec and the head but not the base's pipelines trains without an error and
    decodes every keypoint to the wrong pixels; the head compares the crops' size (metainfo) with its decoder's."""
    head = logit_head()
    other = samples(2, torch.rand(2, K, 2) * 2 - 1)
    for s in other:
        s.set_metainfo(dict(input_size=(64, 64)))
    with pytest.raises(ValueError, match=r"crops are \(64, 64\).*decodes for \(48, 64\)"):
        head.loss((torch.randn(2, K, H, W),), other)
    with pytest.raises(ValueError, match=r"crops are \(64, 64\).*decodes for \(48, 64\)"):
        head.predict((torch.randn(2, K, H, W),), other)
    head.predict((torch.randn(2, K, H, W),), samples(2))  # the matching size predicts


def test_convs_without_a_deconv_stack_are_built_as_mmposes_heatmap_head_builds_them():
    from mmpose.models.heads import HeatmapHead
    args = dict(in_channels=32, out_channels=K, deconv_out_channels=None, conv_out_channels=(16, 16),
                conv_kernel_sizes=(3, 3))
    head = MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K,
                             deconv_out_channels=None, conv_out_channels=(16, 16), conv_kernel_sizes=(3, 3),
                             decoder=dict(type='DSNTLabel', input_size=INPUT)))
    reference = HeatmapHead(**args)
    assert (sum(p.numel() for p in head.parameters()) == sum(p.numel() for p in reference.parameters()) > 32 * K)
    assert head.simplebaseline_head.state_dict().keys() == reference.state_dict().keys()
    coords, maps = head((torch.randn(2, 32, H, W),))
    assert coords.shape == (2, K, 2) and maps.shape == (2, K, H, W)


def test_maps_of_another_size_than_configured_are_warned_of_once_in_training_and_prediction(monkeypatch):
    import ipr_plugin.models.heads.ipr_head as module
    logged = []
    monkeypatch.setattr(module, 'print_log', lambda message, **kwargs: logged.append(message))

    def build():
        return MODELS.build(dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K,
                                 deconv_out_channels=None, final_layer=dict(kernel_size=3),  # unpadded: 2 cells less
                                 decoder=dict(type='DSNTLabel', input_size=INPUT)))

    head, feats = build(), (torch.randn(2, 32, H, W),)
    coords, maps = head(feats)  # forward alone (an ONNX export at another input size) says nothing
    assert maps.shape[-2:] == (H - 2, W - 2) and not logged
    head.loss(feats, samples(2, torch.rand(2, K, 2) * 2 - 1))
    head.predict(feats, samples(2))
    [message] = logged
    assert 'the maps are 10x14' in message and 'configured 12x16' in message
    fresh = build()  # the configured size: nothing
    fresh.loss((torch.randn(2, 32, H + 2, W + 2),), samples(2, torch.rand(2, K, 2) * 2 - 1))
    configured = (torch.randn(2, 32, H + 2, W + 2),)
    fresh.predict([configured, configured], samples(2), dict(flip_test=True))
    assert len(logged) == 1


def test_a_checkpoint_of_a_head_that_dropped_its_convs_is_refused_by_name():
    """mmpose's IntegralRegressionHead (and this head before it built them) ignores conv_out_channels without
    deconvs: its state dict holds a final layer on the backbone's channels only."""
    cfg = dict(type='IPRHead', in_channels=32, in_featuremap_size=(W, H), num_joints=K, deconv_out_channels=None,
               decoder=dict(type='DSNTLabel', input_size=INPUT))
    dropped = MODELS.build(cfg).state_dict()  # no convs: final_layer.* only
    head = MODELS.build(dict(cfg, conv_out_channels=(16, ), conv_kernel_sizes=(3, )))
    with pytest.raises(ValueError, match='load it with conv_out_channels=None'):
        head.load_state_dict(dropped)
    head.load_state_dict(head.state_dict())  # its own checkpoints load


@pytest.mark.parametrize('normalizer', ['relu', 'abs'])
def test_a_beta_that_cannot_change_a_relu_or_abs_map_is_refused(normalizer):
    from ipr_plugin.ops import normalize_heatmaps
    logits = torch.randn(2, K, H, W)
    # why: the normalised map is the same at any beta > 0, so a tuned or learnt beta would only be a label
    torch.testing.assert_close(normalize_heatmaps(logits, normalizer, beta=10.0),
                               normalize_heatmaps(logits, normalizer))
    for kwargs in (dict(beta=10.0), dict(learnable_beta=True)):
        with pytest.raises(ValueError, match=f"`beta` scales softmax logits only; with normalizer='{normalizer}'"):
            logit_head(normalizer=normalizer, **kwargs)
    logit_head(normalizer=normalizer)  # beta 1, not learnt: builds


@pytest.mark.parametrize('decoder', [dict(type='IntegralRegressionLabel', input_size=INPUT, heatmap_size=(W, H),
                                          sigma=2.0),
                                     dict(type='RegressionLabel', input_size=INPUT),
                                     dict(type='MSRAHeatmap', input_size=INPUT, heatmap_size=(W, H), sigma=2.0)])
def test_a_decoder_of_mmpose_is_refused_as_the_head_is_built(decoder):
    """mmpose's codecs fail only at the first validation, after a whole epoch (a TypeError in mmpose's BaseHead), or
    state_dict() fails; RegressionLabel would decode [-1, 1] coordinates as [0, 1] ones."""
    with pytest.raises(ValueError, match=f"`decoder` must be a DSNTLabel, got {decoder['type']}: .*"
                                         r"decoder=dict\(type='DSNTLabel'"):
        logit_head(decoder=decoder)


@pytest.mark.parametrize('loss', [dict(type='KeypointMSELoss'), dict(type='JSDiscretLoss'),
                                  dict(type='AdaptiveWingLoss'), dict(type='KLDiscretLoss')])
def test_a_heatmap_or_simcc_loss_of_mmpose_is_refused_as_the_head_is_built(loss):
    """They compare maps or SimCC vectors: on coordinates they train on NaN (JSDiscretLoss), fail at the first
    step, or run as another loss than their name says (KeypointMSELoss)."""
    with pytest.raises(ValueError, match=f"`loss` {loss['type']} is not one of mmpose's coordinate losses "
                                         r'\(it is in (heatmap|classification)_loss'):
        logit_head(loss=loss)


@pytest.mark.parametrize('loss', ['MSELoss', 'WingLoss', 'SoftWingLoss', 'MPJPELoss', 'SmoothL1Loss', 'L1Loss',
                                  'BoneLoss'])
def test_mmposes_coordinate_losses_take_the_keypoint_weights_as_its_regression_head_passes_them(loss):
    """(B, K, 1), as mmpose's RegressionHead passes them (MSELoss, WingLoss, SoftWingLoss and MPJPELoss fail on
    (B, K)), and (B, K) to BoneLoss, which weighs whole keypoints."""
    cfg = dict(type=loss, use_target_weight=True)
    if loss == 'BoneLoss':
        cfg['joint_parents'] = [0, 0, 0, 1, 2]
    labels = torch.rand(2, K, 2) * 1.6 - 0.8
    train = samples(2, labels)
    train[1].gt_instance_labels.keypoint_weights[0, 2:] = 0  # unlabelled keypoints, weighed out
    losses = logit_head(loss=cfg).loss((torch.randn(2, K, H, W, requires_grad=True),), train)
    assert torch.isfinite(losses['loss_kpt']) and losses['loss_kpt'] > 0
    losses['loss_kpt'].backward()


@pytest.mark.parametrize('base, refused, leftover', [
    ('body_2d_keypoint/integral_regression/coco/ipr_res50_8xb64-210e_coco-256x256.py', 'IntegralL1Loss', 'losses'),
    ('body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py', 'IPRHead', 'out_channels')])
def test_a_head_merged_into_an_inherited_one_names_the_leftover_keys_and_delete(tmp_path, base, refused, leftover):
    """The README's snippet on top of one of mmpose's model configs, without ``_delete_=True``: Python's
    "unexpected keyword argument" said nothing of the merge (the IPR base's head takes our head's arguments, and
    its MultipleLossWrapper's ``losses`` reach our loss)."""
    from mmengine.config import Config

    from ipr_plugin.paths import installed_config
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = [{installed_config('mmpose::' + base)!r}]\n"
                     "model = dict(head=dict(type='IPRHead', in_channels=2048, in_featuremap_size=(8, 8), "
                     "num_joints=17, loss=dict(type='IntegralL1Loss'),\n"
                     "                       decoder=dict(type='DSNTLabel', input_size=(256, 256))))\n")
    with pytest.raises(TypeError, match=f"^{refused} got arguments it does not take: .*'{leftover}'.*"
                                        f"dict\\(_delete_=True, type='{refused}', ...\\)$"):
        MODELS.build(Config.fromfile(str(child)).model.head)
    child.write_text(child.read_text().replace("head=dict(type=", "head=dict(_delete_=True, type="))
    assert type(MODELS.build(Config.fromfile(str(child)).model.head)).__name__ == 'IPRHead'


@pytest.mark.parametrize('loss', [dict(type='SmoothL1Loss', use_target_weight=True), dict(type='L1Loss')])
def test_mmposes_loss_merged_into_an_inherited_one_names_the_leftover_keys_and_delete(tmp_path, repo_root, loss):
    """A child of the DSNT config that sets one of mmpose's losses keeps IntegralJointLoss's keys; mmpose's class
    failed with Python's "unexpected keyword argument 'coord_loss'", which said nothing of the merge."""
    from mmengine.config import Config
    child = tmp_path / 'child.py'
    base = repo_root / 'configs' / 'ipr_res50_dsnt-8xb64-210e_coco-256x256.py'
    child.write_text(f'_base_ = [{str(base)!r}]\n'
                     f'model = dict(head=dict(in_channels=64, deconv_out_channels=None, loss={loss!r}))\n')
    with pytest.raises(TypeError, match=f"^{loss['type']} got arguments it does not take: 'anneal', 'coord_loss', "
                                        r"'reg_weight', 'regularizer', 'sigma'\. .*"
                                        f"dict\\(_delete_=True, type='{loss['type']}', ...\\)$"):
        MODELS.build(Config.fromfile(str(child)).model.head)
    child.write_text(child.read_text().replace('loss={', "loss={'_delete_': True, "))
    head = MODELS.build(Config.fromfile(str(child)).model.head)
    assert type(head.loss_module).__name__ == loss['type']


def test_a_head_built_in_python_takes_built_parts_and_names_a_bare_tensor():
    """A loss or codec built in Python failed on ``.get`` (cfg should be a dict); a bare tensor for the features
    was read as its last sample and refused as a pooled map."""
    from ipr_plugin.codecs import DSNTLabel
    from ipr_plugin.models.heads.ipr_head import IPRHead
    from ipr_plugin.models.losses import IntegralL1Loss
    loss, codec = IntegralL1Loss(), DSNTLabel(input_size=INPUT)
    head = IPRHead(in_channels=8, in_featuremap_size=(W, H), num_joints=K, deconv_out_channels=None, loss=loss,
                   decoder=codec)
    assert head.loss_module is loss and head.decoder is codec
    x = torch.randn(2, 8, H, W)
    with pytest.raises(TypeError, match=r'a tuple of \(B, C, H, W\) maps .* got Tensor of shape \(2, 8, \d+, \d+\): '
                                        r'pass \(x,\)'):
        head(x)
    assert head((x,))[0].shape == (2, K, 2)
    with pytest.raises(TypeError, match='`loss` must be a config dict or a loss module, got str'):
        IPRHead(in_channels=8, in_featuremap_size=(W, H), num_joints=K, loss='IntegralL1Loss')
