"""The accuracy study (tools/accuracy_study.py): its configs and its calibration maths (the tool run end to end:
tests/test_accuracy_study_run.py)."""
import json

import numpy as np
import pytest

from ipr_plugin.apis.study_configs import DEFAULT_VARIANTS, VARIANTS, Budget, build_variant_config, get_variant
from ipr_plugin.apis.study_calibration import keypoint_errors, score_bins, spearman
from ipr_plugin.apis.study_report import (calibration_lines, curve_table, nonfinite_predictions, plotted_curve,
                                          table_rows)



# ------------------------------------------------------------------------------------------ configs
def _values_of(key, node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _values_of(key, v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _values_of(key, v)


@pytest.mark.parametrize('variant', [v for v in VARIANTS if v.trained], ids=lambda v: v.name)
def test_every_variant_gets_the_same_budget(variant, tmp_path):
    data = dict(root=str(tmp_path), val_ann_file=str(tmp_path / 'val.json'), bbox_file=str(tmp_path / 'det.json'))
    budget = Budget(depth=18, input_size=64, iters=10, batch_size=4, workers=0, cuda=False, seed=3, warmup=200,
                    curve_points=2)
    cfg = build_variant_config(variant, budget, data, tmp_path / 'run')
    assert cfg.model.init_cfg is None and cfg.model.backbone.depth == 18 and cfg.model.head.in_channels == 512
    assert cfg.train_cfg == dict(by_epoch=False, max_iters=10, val_interval=5)
    assert cfg.optim_wrapper == dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3))
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
    assert cfg.param_scheduler[0]['end'] == 5 == cfg.param_scheduler[1]['begin']  # warm-up capped at half
    assert cfg.randomness == dict(seed=3)
    assert cfg.train_dataloader.batch_size == 4 and cfg.train_dataloader.dataset.data_root == f'{tmp_path}/'
    assert cfg.val_dataloader.dataset.bbox_file == data['bbox_file']
    assert cfg.val_evaluator[0] == dict(type='CocoMetric', ann_file=data['val_ann_file'])
    # every copy of the resolved codec and of the affine transform follows the input size
    sizes = list(_values_of('input_size', cfg.to_dict())) + list(_values_of('heatmap_size', cfg.to_dict()))
    assert sizes and all(tuple(s) in ((64, 64), (16, 16)) for s in sizes), sizes
    assert cfg.model.test_cfg.flip_test is True
    assert 'prefetch_factor' not in cfg.train_dataloader and 'prefetch_factor' not in cfg.val_dataloader  # 0 workers
    hooks = [h.type for h in [*cfg.default_hooks.values(), *cfg.custom_hooks] if h is not None]
    assert hooks.count('StudyRecordHook') == 1
    if variant.source == 'ours':
        assert cfg.model.data_preprocessor.type == 'IPRDataPreprocessor'
        assert cfg.train_dataloader.collate_fn == dict(type='ipr_collate')
        assert not cfg.train_dataloader.pin_memory  # CPU
        assert {'ChannelsLastHook', 'IPRTestCollateHook'} <= set(hooks)  # the fast config's
    else:  # mmpose's integral heads, or the heatmap head their recipe starts from
        assert cfg.model.head.type == ('HeatmapHead' if 'topdown_heatmap' in variant.config else 'DSNTHead')
        assert cfg.model.data_preprocessor.type == 'PoseDataPreprocessor'
        assert not {'ChannelsLastHook', 'IPRTestCollateHook'} & set(hooks)
    if variant.anneal_by_iter:
        assert cfg.model.head.loss.anneal.by == 'iter'
    for key, value in variant.head:
        assert cfg.model.head[key] == value


def test_the_study_takes_every_hook_the_fast_config_adds_but_its_logging():
    from mmengine.config import Config
    from ipr_plugin.apis.study_configs import _FAST_HOOKS, FAST_CONFIG
    from ipr_plugin.paths import plugin_config
    main = plugin_config('ipr_res50_8xb64-210e_coco-256x256.py')
    fast, main = (Config.fromfile(str(path)).default_hooks for path in (FAST_CONFIG, main))
    assert set(fast) - set(main) == {*_FAST_HOOKS, 'runtime_info'}


def test_each_ablation_changes_only_the_head_settings_it_names(tmp_path):
    """ours-JS-beta10 and ours-JS-debias split ours-Debias's difference from ours-JS (beta 10 + debias); the
    median and cap rows change only the background level or the cap of a debiased row."""
    data = dict(root=str(tmp_path), val_ann_file='v.json', bbox_file='d.json')

    def head_of(name):
        return build_variant_config(get_variant(name), Budget(), data, tmp_path).model.head.to_dict()

    js, debias = head_of('ours-JS'), head_of('ours-Debias')
    assert (js.get('beta', 1.0), js.get('debias', False)) == (1.0, False)
    assert (debias['beta'], debias['debias']) == (10.0, True)
    assert head_of('ours-JS-beta10') == dict(js, beta=10.0)
    assert head_of('ours-JS-debias') == dict(js, debias=True)
    assert head_of('ours-JS-debias-median') == dict(js, debias=True, debias_background='median')
    assert head_of('ours-Debias-median') == dict(debias, debias_background='median')
    assert head_of('ours-Debias-cap0.5') == dict(debias, debias_max_background=0.5)
    assert head_of('ours-Debias-median-cap0.5') == dict(debias, debias_background='median',
                                                        debias_max_background=0.5)
    # the fine-tuning pair: the beta-10 model continued with and without the correction
    assert head_of('ours-JS-beta10-ft') == head_of('ours-JS-beta10')
    assert head_of('ours-Debias-ft') == debias
    assert not {'ours-JS-beta10', 'ours-JS-debias', 'ours-JS-debias-median', 'ours-Debias-median',
                'ours-Debias-cap0.5', 'ours-Debias-median-cap0.5', 'ours-JS-beta10-ft',
                'ours-Debias-ft'} & set(DEFAULT_VARIANTS)


HM_ROWS = ('mmpose-IPR', 'mmpose-DSNT', 'mmpose-Debias', 'ours-L1', 'ours-JS', 'ours-Debias')


def test_the_recipe_rows_are_the_issue_rows_started_from_a_heatmap_model(tmp_path):
    """Each -hm row is its from-scratch row in every setting but the start: mmpose's recipe fine-tunes all three
    of its integral configs from a heatmap-trained SimpleBaseline, which the study trains first."""
    from ipr_plugin.apis.accuracy_study import with_needs
    data = dict(root=str(tmp_path), val_ann_file='v.json', bbox_file='d.json')
    budget = Budget(base_channels=16, input_size=128)
    start = build_variant_config(get_variant('mmpose-SimpleBaseline'), budget, data, tmp_path).model
    assert start.head.type == 'HeatmapHead' and start.head.decoder.type == 'MSRAHeatmap'
    assert tuple(start.head.decoder.heatmap_size) == (32, 32)  # the integral heads' maps at 128x128
    for name in HM_ROWS:
        scratch, hm = get_variant(name), get_variant(f'{name}-hm')
        assert hm.init_from == 'mmpose-SimpleBaseline' and hm.ablation and hm.name not in DEFAULT_VARIANTS
        a = build_variant_config(scratch, budget, data, tmp_path).to_dict()
        b = build_variant_config(hm, budget, data, tmp_path, load_from='/start.pth').to_dict()
        assert b.pop('load_from') == '/start.pth' and a.pop('load_from') is None
        assert a == b, name
        # the start's deconv stack and final layer have the shapes the fine-tuned head loads
        assert b['model']['head']['deconv_out_channels'] == start.head.deconv_out_channels
        assert b['model']['head']['in_channels'] == start.head.in_channels
    assert with_needs(['ours-JS-hm']) == ['mmpose-SimpleBaseline', 'ours-JS-hm']
    # the control: the heatmap model itself, continued for the same budget
    control = build_variant_config(get_variant('mmpose-SimpleBaseline-hm'), budget, data, tmp_path,
                                   load_from='/start.pth')
    assert control.load_from == '/start.pth' and control.model == start


def test_a_fine_tuned_variant_starts_from_its_source_and_runs_after_it(tmp_path):
    from ipr_plugin.apis.accuracy_study import with_needs
    data = dict(root=str(tmp_path), val_ann_file='v.json', bbox_file='d.json')
    for name in ('ours-JS-beta10-ft', 'ours-Debias-ft'):
        variant = get_variant(name)
        assert variant.trained and variant.needs == ('ours-JS-beta10', )
        cfg = build_variant_config(variant, Budget(), data, tmp_path, load_from='/ckpt/iter_10.pth')
        assert cfg.load_from == '/ckpt/iter_10.pth' and cfg.model.init_cfg is None
        assert build_variant_config(variant, Budget(), data, tmp_path).load_from is None
    assert with_needs(['ours-Debias-ft']) == ['ours-JS-beta10', 'ours-Debias-ft']
    assert with_needs(['ours-JS-ones', 'ours-Debias-ft', 'ours-L1']) == \
        ['ours-L1', 'ours-JS', 'ours-JS-ones', 'ours-JS-beta10', 'ours-Debias-ft']
    for variant in VARIANTS:  # the order the study runs them in puts every source first
        assert all(VARIANTS.index(get_variant(n)) < VARIANTS.index(variant) for n in variant.needs)


def test_a_longer_fine_tuning_keeps_the_evaluation_spacing_and_the_rest_of_the_budget(tmp_path):
    data = dict(root=str(tmp_path), val_ann_file='v.json', bbox_file='d.json')
    budget = Budget(iters=1000, curve_points=4, warmup=100, seed=1)
    longer = budget.fine_tuning(3000)
    assert (longer.iters, longer.curve_points, longer.val_interval) == (3000, 12, 250)
    def rest(b):
        return {k: v for k, v in vars(b).items() if k not in ('iters', 'curve_points', 'val_every')}
    assert longer.warmup_iters == 100 and rest(longer) == rest(budget)
    assert budget.fine_tuning(1000) is budget  # the default: the start's budget, unchanged
    assert Budget(iters=3, curve_points=2).fine_tuning(4).val_interval == 2  # the tiny run's spacing
    # lengths that are no multiple of the spacing keep it too (the last point comes at the end of training)
    for iters, points in ((600, 2), (1200, 3), (1700, 4)):
        shorter_or_odd = Budget(iters=1000, curve_points=2).fine_tuning(iters)
        assert (shorter_or_odd.val_interval, shorter_or_odd.curve_points) == (500, points)
    cfg = build_variant_config(get_variant('ours-Debias-hm'), longer, data, tmp_path, load_from='/start.pth')
    assert cfg.train_cfg == dict(by_epoch=False, max_iters=3000, val_interval=250)
    assert cfg.param_scheduler[-1]['end'] == 3000 and cfg.param_scheduler[-1]['T_max'] == 2900


def test_a_narrower_model_narrows_backbone_and_head_alike(tmp_path):
    data = dict(root=str(tmp_path), val_ann_file='v.json', bbox_file='d.json')
    for variant in (v for v in VARIANTS if v.trained):
        for depth, last_stage in ((18, 128), (50, 512)):
            cfg = build_variant_config(variant, Budget(depth=depth, base_channels=16), data, tmp_path)
            assert cfg.model.backbone.base_channels == cfg.model.backbone.stem_channels == 16
            assert cfg.model.head.in_channels == last_stage  # 8x (or 32x, bottleneck) the base width
            assert tuple(cfg.model.head.deconv_out_channels) == (64, 64, 64)


def test_amp_is_bf16_for_every_variant(tmp_path):
    """bf16 without loss scaling: mmengine's default dynamic scaler would add an unscale pass and a host sync
    (its inf check) to every step of every row, the fast row's included."""
    data = dict(root=str(tmp_path), val_ann_file='v.json', bbox_file='d.json')
    for variant in (v for v in VARIANTS if v.trained):
        cfg = build_variant_config(variant, Budget(amp=True), data, tmp_path)
        assert cfg.optim_wrapper == dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False),
                                         optimizer=dict(type='Adam', lr=1e-3))


# ------------------------------------------------------------------------------------------ calibration maths
def test_matching_uses_the_detector_box_and_labeled_keypoints(tmp_path):
    kpts = np.zeros((17, 3))
    kpts[:, :2] = 50
    kpts[:5, 2] = 2  # 5 labeled keypoints
    ann = dict(id=1, image_id=7, bbox=[0, 0, 100, 100], area=400.0, iscrowd=0, num_keypoints=5,
               keypoints=kpts.reshape(-1).tolist())
    ann_file = tmp_path / 'val.json'
    ann_file.write_text(json.dumps(dict(images=[dict(id=7)], annotations=[ann], categories=[])))
    pred = np.full((1, 17, 2), 50.0)
    pred[0, 0] = [54, 53]  # 5 px off: error 5 / sqrt(400) = 0.25
    on_person = dict(img_id=7, pred_instances=dict(keypoints=pred, keypoint_scores=np.full((1, 17), 0.5),
                                                   bboxes=np.array([[5, 0, 100, 105]])))
    false_positive = dict(img_id=7, pred_instances=dict(keypoints=pred, keypoint_scores=np.ones((1, 17)),
                                                        bboxes=np.array([[200, 200, 260, 300]])))
    pairs = keypoint_errors([on_person, false_positive], str(ann_file))
    assert pairs['num_matched'] == 1 and pairs['num_predictions'] == 2
    np.testing.assert_allclose(pairs['errors'], [0.25, 0, 0, 0, 0])
    np.testing.assert_allclose(pairs['scores'], [0.5] * 5)


def test_calibration_leaves_out_keypoints_without_a_finite_score_or_position(tmp_path):
    """One NaN keypoint (fp16 evaluation, a diverging model) must not make rho and its score bin NaN."""
    import pickle
    from ipr_plugin.apis.study_calibration import calibration
    kpts = np.zeros((17, 3))
    kpts[:, 0], kpts[:, 1], kpts[:, 2] = np.arange(17) * 5.0, 50, 2
    ann = dict(id=1, image_id=7, bbox=[0, 0, 100, 100], area=400.0, iscrowd=0, num_keypoints=17,
               keypoints=kpts.reshape(-1).tolist())
    ann_file = tmp_path / 'val.json'
    ann_file.write_text(json.dumps(dict(images=[dict(id=7)], annotations=[ann], categories=[])))
    pred = kpts[None, :, :2].copy()
    pred[0, :, 1] += np.arange(17)  # error grows with the keypoint's index, score falls: rho = -1
    scores = np.linspace(1, 0.2, 17)[None]
    pred[0, 3] = np.nan
    scores[0, 5] = np.nan
    path = tmp_path / 'predictions.pkl'
    path.write_bytes(pickle.dumps([dict(img_id=7, pred_instances=dict(keypoints=pred, keypoint_scores=scores,
                                                                        bboxes=np.array([[0, 0, 100, 100]])))]))
    cal = calibration('ours', path, str(ann_file))
    assert cal['num_keypoints'] == 15 and cal['num_nonfinite'] == 2
    assert cal['spearman'] == pytest.approx(-1.0) and all(np.isfinite(b['mean_error']) for b in cal['bins'])
    [line] = calibration_lines([cal], 'ours', True)
    assert '15 keypoints of 1/1 matched predictions; 2 keypoints with a non-finite score or position left out' in line


def test_a_diverged_run_is_flagged_not_ranked_by_its_artefact_ap(tmp_path):
    import pickle
    finite = dict(img_id=1, pred_instances=dict(keypoints=np.zeros((1, 17, 2))))
    nan = dict(img_id=2, pred_instances=dict(keypoints=np.full((1, 17, 2), np.nan)))
    path = tmp_path / 'predictions.pkl'
    path.write_bytes(pickle.dumps([finite, nan, nan]))
    assert nonfinite_predictions(path) == (2, 3)
    run = dict(AP=0.24, AP50=0.24, AP75=0.24, AR=0.2, train_time_s=1.0, nonfinite_predictions=(2, 3))
    healthy = dict(run, AP=0.05, nonfinite_predictions=(0, 3))
    rows = table_rows(dict(bad=dict(notes='n', error=None, seeds={'0': run}),
                           good=dict(notes='n', error=None, seeds={'0': healthy})))
    assert rows[0][1] == '0.240 (NaN)' and 'diverged' in rows[0][-1] and '2/3' in rows[0][-1]
    assert rows[1][1] == '0.050' and 'diverged' not in rows[1][-1]
    from ipr_plugin.apis.accuracy_study import _rank_key
    assert max([run, healthy], key=_rank_key) is healthy


def test_a_row_cut_off_by_its_time_limit_keeps_the_evaluations_it_made():
    from ipr_plugin.apis.study_rows import CutOff, ap_curve
    err = CutOff(99.6, ap_curve(dict(curve=[dict(iter=500, **{'coco/AP': 0.2345, 'coco/AR': 0.3})])))
    assert str(err) == 'cut off by its time limit after 100 s; its last evaluation: AP 0.234 at iteration 500'
    assert str(CutOff(12, [])) == 'cut off by its time limit after 12 s, before its first evaluation'
    done = dict(AP=0.3, AP50=0.5, AP75=0.2, AR=0.4, train_time_s=9.0, nonfinite_predictions=(0, 3),
                curve=[dict(iter=500, AP=0.25), dict(iter=1000, AP=0.3)])
    results = dict(finished=dict(notes='n', error=None, seeds={'0': done}),
                   cut=dict(notes='n', error=str(err), seeds={}, cut_off={'0': [dict(iter=500, AP=0.2345)]}),
                   failed=dict(notes='n', error='boom', seeds={}))
    rows = table_rows(results)
    assert [r[1] for r in rows] == ['0.300', 'cut off', 'FAILED'] and 'AP 0.234 at iteration 500' in rows[1][-1]
    assert curve_table(results).splitlines()[2:] == ['| finished | 0.250 | 0.300 |', '| cut (cut off) | 0.234 | — |']


def test_spearman_and_bins_survive_constant_scores():
    rho, p = spearman(np.ones(50), np.arange(50.0))
    assert np.isnan(rho) and np.isnan(p)
    bins = score_bins(np.ones(50), np.arange(50.0))
    assert len(bins) == 1 and bins[0]['count'] == 50
    scores = np.linspace(0, 1, 100)
    rho, _ = spearman(scores, 1 - scores)
    assert rho == pytest.approx(-1.0)
    bins = score_bins(scores, 1 - scores)
    assert len(bins) == 10 and sum(b['count'] for b in bins) == 100
    assert [b['mean_error'] for b in bins] == sorted((b['mean_error'] for b in bins), reverse=True)
    assert score_bins(np.zeros(0), np.zeros(0)) == []


def test_an_empty_calibration_says_whether_ours_were_asked_for():
    failed = calibration_lines([], None)
    assert len(failed) == 1 and 'no trained variant of ours succeeded' in failed[0]
    absent = calibration_lines([], None, ours_requested=False)
    assert len(absent) == 1 and 'the run trains no variant of ours' in absent[0]


def test_the_plot_draws_a_fine_tuned_row_on_from_its_start():
    def row(start, curve, seed='1'):
        return dict(error=None, start=start, seeds={seed: dict(curve=[dict(iter=i, AP=a) for i, a in curve])})
    results = {'hm': row(None, [(500, 0.1), (1000, 0.2)]), 'ft': row('hm', [(500, 0.05), (1000, 0.3)]),
               'scratch': row(None, [(500, 0.07), (1000, 0.09)]), 'orphan': row('absent', [(1000, 0.4)]),
               'other-seed': row('hm', [(1000, 0.25)], seed='0')}
    assert [(p['iter'], p['AP']) for p in plotted_curve('ft', results)] == [(1000, 0.2), (1500, 0.05), (2000, 0.3)]
    assert plotted_curve('scratch', results) == results['scratch']['seeds']['1']['curve']
    assert plotted_curve('orphan', results) == [dict(iter=1000, AP=0.4)]  # its start is not in this report
    assert plotted_curve('other-seed', results) == [dict(iter=1000, AP=0.25)]  # no start of the same seed
    assert results['ft']['seeds']['1']['curve'][0] == dict(iter=500, AP=0.05)  # the report is not changed


def _run_seeds(monkeypatch, train):
    """Rows mmpose-IPR and ours-L1 through the study's seed loop, with ``train`` in place of a training."""
    import argparse

    from ipr_plugin.apis import accuracy_study
    monkeypatch.setattr(accuracy_study, 'train_variant', train)
    args = argparse.Namespace(parallel=1, finetune_iters=1000, keep_checkpoints=False, reuse=False)
    names = ['mmpose-IPR', 'ours-L1']
    results = {n: dict(notes=get_variant(n).notes, error=None, seeds={}, start=None, source=None) for n in names}
    for seed in (0, 1):
        accuracy_study._run_seed(names, Budget(seed=seed), {}, args, results, lambda line: None)
    return {row[0]: row for row in table_rows(results)}


def _trained(variant, ap):
    return dict(AP=ap, AP50=0.7, AP75=0.5, AR=0.6, train_time_s=10.0, curve=[dict(iter=500, AP=ap)],
                work_dir='/nonexistent', nonfinite_predictions=(0, 10), reused=False, checkpoint='x.pth')


def test_a_row_failing_on_an_extra_seed_keeps_the_seeds_it_did(monkeypatch):
    from ipr_plugin.apis.study_rows import CutOff

    def train(variant, budget, *args, **kwargs):
        if budget.seed == 1 and variant.name == 'ours-L1':
            raise CutOff(300, [dict(iter=500, AP=0.11)])
        return _trained(variant, 0.5 if variant.name == 'ours-L1' else 0.4)

    rows = _run_seeds(monkeypatch, train)
    assert rows['ours-L1'][1] == '0.500' and 'seed 1 not counted: ' in rows['ours-L1'][-1]
    assert rows['mmpose-IPR'][1] == '0.400 (0.400 / 0.400)'


def test_a_row_stopped_by_the_time_limit_is_cut_off_not_failed(monkeypatch):
    from ipr_plugin.apis.study_rows import CutOff, TimeLimitReached

    def train(variant, budget, *args, **kwargs):
        if variant.name == 'ours-L1':
            raise CutOff(290, []) if budget.seed == 0 else TimeLimitReached('not run')  # before any evaluation
        return _trained(variant, 0.4)

    rows = _run_seeds(monkeypatch, train)
    assert rows['ours-L1'][1] == 'cut off'


@pytest.mark.parametrize('flags, message', [(['--input-size', '200'], '--input-size must be a multiple of 32'),
                                            (['--parallel', '0'], '--parallel must be at least 1'),
                                            (['--seeds', '0', '1', '0'], '--seeds must differ from each other, '
                                                                         'got 0 1 0')])
def test_sizes_the_models_cannot_take_are_refused_before_any_work(flags, message, tmp_path):
    """An input size off ResNet's stride gives mmpose's integral heads a wrong feature-map size: refused up front,
    not after the data is written."""
    from ipr_plugin.apis.accuracy_study import main
    with pytest.raises(SystemExit, match=message):
        main(['--tiny', '--work-dir', str(tmp_path / 'work'), *flags])
    assert not (tmp_path / 'work').exists()


def test_rows_run_at_once_share_the_cores(monkeypatch):
    """Each row's torch would take a thread per core: rows at once get a share, a user's setting stands."""
    import argparse
    from ipr_plugin.apis import study_rows
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(study_rows.os, 'cpu_count', lambda: 16)

    def env(parallel, device='cpu'):
        return study_rows.row_env_overrides(argparse.Namespace(parallel=parallel, device=device))

    assert env(1) == {'CUDA_VISIBLE_DEVICES': ''} and env(1, 'cuda') == {}
    assert env(3, 'cuda') == {'OMP_NUM_THREADS': '5'} and env(32)['OMP_NUM_THREADS'] == '1'
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    assert 'OMP_NUM_THREADS' not in env(3)


def test_the_table_reports_medium_and_large_people_apart_and_every_row_has_its_columns():
    """The hard split labels small people too (COCO leaves them unlabelled): AP (M) and AP (L) stand beside AP."""
    from ipr_plugin.apis.study_report import TABLE_HEADER, text_table
    from ipr_plugin.apis.study_rows import _metrics
    run = dict(_metrics({'coco/AP': 0.3, 'coco/AP .5': 0.6, 'coco/AP .75': 0.25, 'coco/AP (M)': 0.2,
                         'coco/AP (L)': 0.45, 'coco/AR': 0.4}), train_time_s=9.0, nonfinite_predictions=(0, 3))
    rows = table_rows(dict(ok=dict(notes='n', error=None, seeds={'0': run}),
                           broken=dict(notes='n', error='boom', seeds={})))
    assert TABLE_HEADER[1:7] == ('AP', 'AP50', 'AP75', 'AP (M)', 'AP (L)', 'AR')
    assert rows[0][:8] == ['ok', '0.300', '0.600', '0.250', '0.200', '0.450', '0.400', '9.0']
    assert all(len(row) == len(TABLE_HEADER) for row in rows) and rows[1][1] == 'FAILED'
    assert text_table(rows).splitlines()[0].split()[-3:] == ['train', 'time', 's']


def test_a_threshold_row_reevaluates_with_the_evaluators_keypoint_score_threshold(monkeypatch, tmp_path):
    """``ours-L1-thr0`` evaluates the ours-L1 model again with CocoMetric's keypoint_score_thr at 0: the option
    reaches ``mim test`` and, merged into the row's config, its test evaluator."""
    import argparse

    from ipr_plugin.apis import study_rows
    calls = []

    def fake_mim(argv, **kwargs):
        calls.append([str(a) for a in argv])
        out = argv[argv.index('--out') + 1]
        out.write_text(json.dumps({'coco/AP': 0.5}))

    monkeypatch.setattr(study_rows, 'run_mim', fake_mim)
    args = argparse.Namespace(work_dir=tmp_path, device='cpu', parallel=1, timeout=60, deadline=None)
    variant = get_variant('ours-L1-thr0')
    assert variant.eval_of == 'ours-L1' and variant.ablation and 'ours-L1-thr0' not in DEFAULT_VARIANTS
    result = study_rows.reevaluate(variant, dict(config='c.py', checkpoint='k.pth'), 0, args, lambda line: None)
    [argv] = calls
    options = argv[argv.index('--cfg-options') + 1:]
    assert options == ['test_evaluator.keypoint_score_thr=0.0'] and result['AP'] == 0.5
    data = dict(root=str(tmp_path), val_ann_file='v.json', bbox_file='d.json')
    cfg = build_variant_config(get_variant('ours-L1'), Budget(), data, tmp_path)
    cfg.merge_from_dict({key: float(value) for key, value in (o.split('=') for o in options)})
    assert cfg.test_evaluator['keypoint_score_thr'] == 0.0 and cfg.test_evaluator['type'] == 'CocoMetric'

