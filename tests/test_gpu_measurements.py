"""tools/gpu_measurements.py: the GPU run's commands stay valid for the tools they call, and fit their time."""
import importlib.util
import os.path as osp

import pytest
import torch

from ipr_plugin.apis import gpu_measurements as gm
from ipr_plugin.apis.accuracy_study import build_parser as study_parser
from ipr_plugin.apis.study_configs import VARIANT_NAMES, get_variant
from ipr_plugin.paths import REPO_ROOT
from ipr_plugin.benchmark.cli import build_parser as benchmark_parser
from ipr_plugin.benchmark.spec import resolve_config_path


@pytest.mark.parametrize('part', gm.PARTS)
def test_each_part_is_a_valid_command_of_its_tool(part, tmp_path):
    argv = gm.part_command(part, tmp_path, 123.4)
    assert argv[0] == '-m'
    module, args = argv[1], argv[2:]
    assert importlib.util.find_spec(module) is not None
    parsed = (benchmark_parser() if module == 'ipr_plugin.benchmark' else study_parser()).parse_args(args)
    assert parsed.time_limit == 123
    assert str(tmp_path) in str(parsed.out)
    if module == 'ipr_plugin.benchmark':
        for spec in parsed.configs:  # resolved as the benchmark resolves them, wherever it runs
            assert osp.isfile(resolve_config_path(spec.split('=', 1)[1])), spec
        assert parsed.batch_size == 64  # the recipe's batch per GPU: the peak memory the targets name
        # the metric part's few images must not replace the full-size set the other parts reuse
        assert (parsed.data_root is None) == (part != 'metric')
    else:
        assert set(parsed.variants) <= set(VARIANT_NAMES) and parsed.iters == 1000
        trained = [n for n in parsed.variants if get_variant(n).trained]
        assert parsed.parallel == len(trained)  # every trained row at once; the re-evaluation follows its model


@pytest.mark.parametrize('seconds', [200.0, 540.0, 3000.0])
def test_the_limits_fit_the_time_given(seconds):
    bench = gm.part_limit('benchmark', seconds, last=False)
    study = gm.part_limit('study', seconds - bench - gm.REPORT_MARGIN, last=True)
    assert 0 < bench <= gm.MOST['benchmark'] and bench <= seconds / 2
    assert bench + study + 2 * gm.REPORT_MARGIN <= seconds
    assert gm.part_limit('benchmark', seconds, last=True) >= bench  # last: the whole rest, up to what it needs


def test_a_part_that_is_not_last_leaves_time_for_the_next():
    for part in ('benchmark', 'study'):
        assert gm.part_limit(part, 1000.0, last=False) + gm.REPORT_MARGIN < 1000.0 - 60
    assert gm.part_limit('compile', 1000.0, last=True) == gm.MOST['compile'] - gm.REPORT_MARGIN


def test_no_part_starts_without_a_minute_left(tmp_path):
    lines = []
    done = gm.run_parts(tmp_path / 'out', 50.0, ['benchmark', 'study'], say=lines.append)
    assert done == {'benchmark': ('not started', None), 'study': ('not started', None)}
    assert any('benchmark: not started' in line for line in lines)
    with pytest.raises(ValueError, match='unknown part'):
        gm.run_parts(tmp_path / 'out', 500.0, ['eval'])


@pytest.mark.parametrize('seconds', ['0', '-5', 'nan'])
def test_a_time_that_is_no_positive_number_is_a_usage_error(tmp_path, capsys, seconds):
    """Every part was skipped for want of time, after the GPU machine had been started for them."""
    with pytest.raises(SystemExit) as stopped:
        gm.main([str(tmp_path / 'out'), '--seconds', seconds])
    assert stopped.value.code == 2 and 'argument --seconds: must be a number > 0' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='on a GPU machine main() would run the measurements')
def test_refuses_to_run_without_a_gpu(tmp_path):
    with pytest.raises(SystemExit, match='no CUDA device'):
        gm.main([str(tmp_path)])


STAND_IN = '''
import subprocess, sys, time
from ipr_plugin.apis.mim_runner import kill_session
from ipr_plugin.cli import exit_on_sigterm
exit_on_sigterm()
# as the benchmark starts its worker and the study its trainings: in a session of their own
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)
open(sys.argv[1], 'w').write(str(child.pid))
try:
    time.sleep(120)  # overruns its time limit
finally:
    kill_session(child)
'''


def test_a_part_past_its_limit_is_stopped_with_what_it_started(tmp_path, monkeypatch):
    """SIGKILL of the tool alone would leave its worker (another session) on the GPU for the next part."""
    import os
    import time
    tool, pid_file = tmp_path / 'tool.py', tmp_path / 'child.pid'
    tool.write_text(STAND_IN)
    monkeypatch.setattr(gm, 'part_limit', lambda part, left, last: 60.0)
    # stopped after 20 s, not 80: time for the stand-in to import the package and start its child on a loaded
    # two-core machine (5 s was not always enough)
    monkeypatch.setattr(gm, 'REPORT_MARGIN', -40.0)
    monkeypatch.setattr(gm, 'part_command', lambda part, out, limit: [str(tool), str(pid_file)])
    monkeypatch.setenv('PYTHONPATH', str(REPO_ROOT))
    done = gm.run_parts(tmp_path / 'out', 100.0, ['benchmark'], say=lambda line: None)
    assert done == {'benchmark': ('killed at its limit', None)}
    assert pid_file.exists(), 'the stand-in was stopped before it started its child: the test proves nothing'
    child = int(pid_file.read_text())
    time.sleep(0.5)
    stat = f'/proc/{child}/stat'
    assert not os.path.exists(stat) or open(stat).read().split()[2] == 'Z', 'the tool\'s child is still running'
