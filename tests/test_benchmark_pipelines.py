"""``tools/benchmark.py --rounds`` and ``--plot``: (d) and (e) repeated with the configs alternating (medians and
paired ratios), and drawn as stacked bars by step.

Both are checked on hand-made worker results here; the real worker's results go through them in the ``--tiny``
run of ``test_benchmark.py``, which uses ``--rounds 2 --plot``."""
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ipr_plugin.benchmark.plot import draw_pipelines, plot_pipelines
from ipr_plugin.benchmark.rounds import merge_rounds, repeat_skip, round_order, rounds_lines
from ipr_plugin.benchmark.spec import ANCHOR_CONFIG, OURS_CONFIG
from ipr_plugin.markdown import append_section


def _run(total: float, steps: Dict[str, float], **extra: Any) -> Dict[str, Any]:
    return dict(name='x', config='x.py', errors={}, pipeline=dict(ms_per_sample=total, steps=steps, samples=8),
                **extra)


def test_rounds_alternate_the_order_and_repeat_only_the_pipelines() -> None:
    assert [round_order(3, r) for r in range(3)] == [[0, 1, 2], [2, 1, 0], [0, 1, 2]]
    assert sorted(repeat_skip([])) == ['eval', 'host', 'loader', 'metric', 'train']
    assert 'test_pipeline' in repeat_skip(['test_pipeline'])  # what the command skips stays skipped


def test_merge_takes_medians_per_step_and_of_the_totals_and_keeps_every_round() -> None:
    first = _run(3.0, dict(load=2.0, warp=1.0), train=dict(per_s=100.0))
    runs = [first, _run(5.0, dict(load=2.5, warp=2.5)), _run(4.0, dict(load=3.5, warp=0.5))]
    merged = merge_rounds(runs)
    assert merged['pipeline']['ms_per_sample'] == 4.0
    assert merged['pipeline']['steps'] == dict(load=2.5, warp=1.0)  # per step, not the median round's steps
    assert merged['pipeline']['rounds'] == [3.0, 5.0, 4.0]
    assert merged['train'] == dict(per_s=100.0)  # the first round's other measurements are kept
    assert first['pipeline']['ms_per_sample'] == 3.0  # the inputs are not changed


def test_a_failed_or_cut_off_round_is_named_and_left_out_of_the_medians() -> None:
    failed = dict(name='x', config='x.py', errors={'pipeline': 'OSError: disk'})
    cut = dict(name='x', config='x.py', errors={}, cut_off=['pipeline'])
    merged = merge_rounds([_run(3.0, dict(load=3.0)), failed, _run(5.0, dict(load=5.0)), cut])
    assert merged['pipeline']['rounds'] == [3.0, None, 5.0, None]
    assert merged['pipeline']['ms_per_sample'] == 4.0
    assert merged['errors'] == {'pipeline (round 2)': 'OSError: disk'}
    assert merged['rounds_cut_off'] == [4]
    # without --rounds the result is the worker's, with no rounds line
    single = merge_rounds([_run(3.0, dict(load=3.0))])
    assert 'rounds' not in single['pipeline'] and rounds_lines([single]) == []


@pytest.mark.parametrize('first', [
    dict(name='x', config='x.py', errors={'pipeline': 'OSError: disk'}),
    dict(name='x', config='x.py', errors={}, cut_off=['pipeline', 'metric']),
    dict(name='x', config='x.py', errors={'worker': 'exit status -9'}),
])
def test_a_first_round_that_missed_a_measurement_does_not_blank_what_later_rounds_measured(first):
    from ipr_plugin.benchmark.report import main_table, pipeline_table
    anchor = merge_rounds([_run(4.0, dict(load=4.0)), _run(4.0, dict(load=4.0))])
    merged = dict(merge_rounds([first, _run(2.0, dict(load=2.0))]), name='x')
    assert merged['pipeline']['ms_per_sample'] == 2.0 and merged['pipeline']['rounds'] == [None, 2.0]
    assert '| (d) CPU pipeline ms/sample | 4 | 2 | 0.50 |' in main_table([dict(anchor, name='a'), merged])
    assert '| total | 4 | 2 | 0.50 |' in pipeline_table([dict(anchor, name='a'), merged])
    if 'pipeline' in first['errors']:
        assert merged['errors'] == {'pipeline (round 1)': 'OSError: disk'}
    if first.get('cut_off'):
        assert merged['cut_off'] == ['metric'] and merged['rounds_cut_off'] == [1]
    if 'worker' in first['errors']:  # what no round measured stays an error
        assert '| (a) train img/s | skipped | error | n/a |' in main_table([dict(anchor, name='a'), merged])


def test_the_rounds_line_pairs_each_round_with_the_anchors_same_round() -> None:
    anchor = dict(name='mmpose', pipeline=dict(rounds=[3.0, 2.0, 4.0]))
    ours = dict(name='ours', pipeline=dict(rounds=[1.5, None, 2.4]))
    assert rounds_lines([anchor, ours]) == [
        '(d) CPU pipeline, total ms/sample by round: mmpose 3, 2, 4; ours 1.5, not measured, 2.4; '
        'ours / mmpose by round 0.500, 0.600 (median 0.550, highest 0.600)']


def test_the_command_runs_the_configs_in_alternating_rounds(monkeypatch, tmp_path) -> None:
    from ipr_plugin.benchmark import cli
    calls: List[tuple] = []

    def record(spec):
        calls.append((spec.name, tuple(sorted(spec.skip))))
        total = dict(a=4.0, b=2.0)[spec.name] + len(calls) / 100
        return dict(name=spec.name, config=spec.config, device='cpu', errors={},
                    pipeline=dict(ms_per_sample=total, steps=dict(load=total), samples=8))

    monkeypatch.setattr(cli, 'run_config', record)
    monkeypatch.setattr(cli, 'prepare_data', lambda root, *args: dict(
        num_train_images=10, num_train_instances=30, num_val_images=5, num_detections=15))
    out = tmp_path / 'B.md'
    assert cli.main(['--device', 'cpu', '--configs', f'a={ANCHOR_CONFIG}', f'b={OURS_CONFIG}',
                     '--skip', 'train', 'loader', 'eval', 'host', 'metric', '--rounds', '3', '--out', str(out)]) == 0
    repeat = tuple(sorted(repeat_skip([])))
    first = tuple(sorted(['train', 'loader', 'eval', 'host', 'metric']))
    assert calls == [('a', first), ('b', first), ('b', repeat), ('a', repeat), ('a', repeat), ('b', repeat)]
    text = out.read_text()
    assert '- (d) CPU pipeline, total ms/sample by round: a 4.01, 4.04, 4.05; b 2.02, 2.03, 2.06; ' \
        'b / a by round 0.504, 0.502, 0.509 (median 0.504, highest 0.509)' in text
    assert '| (d) CPU pipeline ms/sample | 4.04 | 2.03 | 0.50 |' in text  # medians in the table
    assert '- Rounds: (d) and (e) run 3 times' in text


@pytest.mark.parametrize('argv, message', [
    (['--rounds', '0'], 'argument --rounds: must be at least 1, got 0'),
    (['--rounds', '2', '--skip', 'pipeline', 'test_pipeline'],
     'argument --rounds: repeats (d) and (e), and --skip leaves both out'),
    (['--pipeline-samples', '0'], 'argument --pipeline-samples: must be at least 1, got 0'),
    (['--batch-size', '0'], 'argument --batch-size: must be at least 1, got 0'),
    (['--workers', '-2'], 'argument --workers: must be at least 0, got -2'),
    (['--iters', '-1'], 'argument --iters: must be at least 1, got -1'),
    (['--time-limit', '0'], 'argument --time-limit: must be a number of seconds > 0, got 0.0'),
])
def test_arguments_that_cannot_work_are_refused_naming_the_flag(argv, message, capsys, monkeypatch) -> None:
    from ipr_plugin.benchmark import cli
    monkeypatch.setattr(cli, 'prepare_data', lambda *args: pytest.fail('the benchmark started'))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['--device', 'cpu'] + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _config(name: str, train_steps: Dict[str, float], test_steps: Dict[str, float], rounds=None) -> Dict[str, Any]:
    result: Dict[str, Any] = dict(name=name, errors={})
    for key, steps in (('pipeline', train_steps), ('test_pipeline', test_steps)):
        if steps:
            result[key] = dict(ms_per_sample=sum(steps.values()), steps=steps, samples=8)
            if rounds:
                result[key]['rounds'] = rounds
    return result


def test_the_plot_has_a_bar_per_config_and_a_step_keeps_its_colour_in_both_panels(tmp_path: Path) -> None:
    anchor = _config('mmpose', dict(LoadImage=1.2, RandomFlip=0.05, TopdownAffine=0.9),
                     dict(LoadImage=1.1, TopdownAffine=0.3), rounds=[2.0, 2.3])
    ours = _config('ours', dict(IPRLoadImage=1.0, IPRRandomFlip=0.08, TopdownAffine=0.3),
                   dict(IPRLoadImage=0.4, TopdownAffine=0.3), rounds=[1.3, 1.5])
    fig = draw_pipelines([anchor, ours])
    train, test = fig.axes
    assert [t.get_text() for t in train.get_yticklabels()] == ['mmpose', 'ours']
    assert train.get_title().startswith('(d) train pipeline') and test.get_title().startswith('(e) test pipeline')

    def colours(ax) -> Dict[str, tuple]:
        handles, labels = ax.get_legend_handles_labels()
        return {label: tuple(h.patches[0].get_facecolor()) for h, label in zip(handles, labels)
                if hasattr(h, 'patches')}  # bars, not the round markers
    train_colours, test_colours = colours(train), colours(test)
    # a drop-in in the row of the transform it replaces, and one colour per row in both panels
    assert set(train_colours) == {'LoadImage / IPRLoadImage', 'RandomFlip / IPRRandomFlip', 'TopdownAffine'}
    for label in ('LoadImage / IPRLoadImage', 'TopdownAffine'):
        assert test_colours[label] == train_colours[label]
    assert len(set(train_colours.values())) == 3
    # 3 segments per config; each bar ends at the config's total
    segments = [p for p in train.patches]
    assert len(segments) == 6
    ends = sorted({round(p.get_x() + p.get_width(), 6) for p in segments})
    assert ends[-1] == round(2.15, 6) and round(1.38, 6) in ends
    texts = [t.get_text() for t in train.texts]
    assert texts == ['2.15 ms', '1.38 ms (0.64x)']
    assert 'total in each round' in train.get_legend_handles_labels()[1]
    assert plot_pipelines([anchor, ours], tmp_path / 'sub' / 'p.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_no_pipeline_measured_draws_nothing(tmp_path: Path) -> None:
    assert plot_pipelines([dict(name='a', errors={}, train=dict(per_s=1.0))], tmp_path / 'p.png') is None
    assert not (tmp_path / 'p.png').exists()
    only_test = draw_pipelines([_config('a', {}, dict(LoadImage=1.0))])
    assert [ax.get_title()[:3] for ax in only_test.axes] == ['(e)']


@pytest.mark.parametrize('argv, message', [
    (['--plot', 'bench.txt'], 'argument --plot: bench.txt: give a file ending in .png, .svg, .pdf'),
    (['--plot', 'README.md/x.png'], 'argument --plot: output file README.md/x.png: '),
    (['--out', '.'], 'argument --out: output file . is a directory'),
])
def test_outputs_that_cannot_be_written_are_refused_before_measuring(argv, message, capsys, monkeypatch) -> None:
    from ipr_plugin.benchmark import cli

    def no_measuring(*args):
        raise AssertionError('the benchmark started instead of refusing its arguments')
    monkeypatch.setattr(cli, 'prepare_data', no_measuring)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # README.md: a file, so not a folder to write in
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['--device', 'cpu'] + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_append_keeps_earlier_sections(tmp_path: Path) -> None:
    out = tmp_path / 'BENCH.md'
    append_section(str(out), '## first\n\nbody 1\n')
    append_section(str(out), '## second\n\nbody 2\n')
    text = out.read_text()
    assert text.count('# Benchmarks') == 1
    assert text.index('## first') < text.index('body 1') < text.index('## second')
