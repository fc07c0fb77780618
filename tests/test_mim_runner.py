"""The subprocess runner behind the demo and the accuracy study: output, exit status and the timeout."""
import math
import sys
import time
from pathlib import Path

import pytest

from ipr_plugin.apis.mim_runner import MimError, MimTimeout, parse_coco_metrics, progress_line, run_command

# A child that starts a grandchild in its session, says one line, then hangs without another word.
SILENT_HANG = ('import subprocess, sys, time; '
               'p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]); '
               'open(sys.argv[1], "w").write(str(p.pid)); print("started", flush=True); time.sleep(120)')


def _alive(pid: int) -> bool:
    status = Path(f'/proc/{pid}/status')
    try:
        return 'State:\tZ' not in status.read_text()  # a zombie is dead, only not yet reaped
    except OSError:
        return False


def test_a_child_that_hangs_silently_is_stopped_at_the_timeout_with_its_session(tmp_path):
    seen = []
    start = time.monotonic()
    with pytest.raises(MimTimeout, match='timed out after 3 s') as err:  # a MimError, told apart from a failure
        run_command([sys.executable, '-c', SILENT_HANG, tmp_path / 'pid'], timeout=3, on_line=seen.append)
    assert time.monotonic() - start < 30  # not the child's 120 s
    assert seen == ['started'] and 'started' in str(err.value)  # what it printed is quoted
    grandchild = int((tmp_path / 'pid').read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def test_output_lines_and_exit_status(tmp_path):
    seen = []
    done = run_command([sys.executable, '-c', 'print("a"); print("b")'], on_line=seen.append)
    assert done.returncode == 0 and done.stdout == 'a\nb\n' and seen == ['a', 'b']
    with pytest.raises(MimError, match='exit status 3') as err:
        run_command([sys.executable, '-c', 'import sys; print("why"); sys.exit(3)'])
    assert 'why' in str(err.value) and not isinstance(err.value, MimTimeout)
    assert run_command([sys.executable, '-c', 'raise SystemExit(2)'], check=False).returncode == 2


def test_a_child_that_ends_while_what_it_started_holds_its_output_is_not_waited_for(tmp_path):
    """As a train.py killed from outside leaves its dataloader workers: the child ends, a grandchild keeps the
    output pipe open. The run ends with the child, and the grandchild goes with it."""
    script = ('import subprocess, sys; p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]); '
              f'open({str(tmp_path / "pid")!r}, "w").write(str(p.pid)); print("started", flush=True); sys.exit(5)')
    start = time.monotonic()
    with pytest.raises(MimError, match='exit status 5') as err:
        run_command([sys.executable, '-c', script], timeout=100)
    assert time.monotonic() - start < 30 and 'started' in str(err.value)
    grandchild = int((tmp_path / 'pid').read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)


def test_a_progress_line_drops_the_timing_fields_and_keeps_every_other_whole():
    """Cut at a width, the debias terms and the last metrics were lost mid-word; the time left comes first."""
    train = ('12/06 16:42:47 - mmengine - INFO - Iter(train) [1/3]  lr: 1.000000e-03  eta: 0:00:16  time: 8.012637  '
             'data_time: 0.068139  memory: 512  loss: 0.020066  loss_kpt: 0.020066  acc_pose: 0.014706  '
             'debias_r: 1.007000  debias_capped: 0.250000')
    assert progress_line(train) == ('Iter(train) [1/3]  eta: 0:00:16  lr: 1.000000e-03  loss: 0.020066  '
                                    'loss_kpt: 0.020066  acc_pose: 0.014706  debias_r: 1.007000  '
                                    'debias_capped: 0.250000')
    # mmengine joins the learning rates of several parameter groups with one space; padding in the counter kept
    several = ('12/06 16:42:47 - mmengine - INFO - Iter(train) [  10/1000]  base_lr: 1.0000e-03 lr: 1.0000e-03  '
               'eta: 0:01:02  time: 0.5  loss: 0.02')
    assert progress_line(several) == 'Iter(train) [  10/1000]  eta: 0:01:02  lr: 1.0000e-03  loss: 0.02'
    val = ('12/06 16:42:48 - mmengine - INFO - Epoch(val) [1][1/1]    coco/AP: 0.100000  coco/AP (M): 0.200000  '
           'coco/AR: 0.300000  coco/AR (L): -1.000000  data_time: 0.1  time: 0.3')
    assert progress_line(val) == ('Epoch(val) [1][1/1]  coco/AP: 0.100000  coco/AP (M): 0.200000  coco/AR: 0.300000  '
                                  'coco/AR (L): -1.000000')


def test_an_epoch_line_padded_to_the_last_epochs_width_keeps_its_head_and_drops_its_timing():
    """mmengine right-aligns the epoch to max_epochs' width (``Epoch(train)  [6][20/24]``): the loop head went
    unrecognised and ``base_lr`` passed as part of a field name. The demo adds the number of epochs."""
    from ipr_plugin.apis.demo import _progress
    line = ('12/06 16:42:47 - mmengine - INFO - Epoch(train)  [6][20/24]  base_lr: 1.0000e-03 lr: 1.0000e-03  '
            'eta: 0:43:12  time: 2.3  data_time: 0.1  memory: 800  loss: 0.1  acc_pose: 0.5')
    assert progress_line(line) == 'Epoch(train) [6][20/24]  eta: 0:43:12  lr: 1.0000e-03  loss: 0.1  acc_pose: 0.5'
    said = []
    _progress(said.append, 60)(line)
    _progress(said.append, 60)('12/06 16:42:48 - mmengine - INFO - Epoch(val) [6][4/4]    coco/AP: 0.1  time: 0.3')
    assert said == ['    Epoch(train) [6/60][20/24]  eta: 0:43:12  lr: 1.0000e-03  loss: 0.1  acc_pose: 0.5',
                    '    Epoch(val) [6][4/4]  coco/AP: 0.1']


def test_coco_metrics_of_the_last_evaluation_including_nan():
    out = ('12/05 10:00:00 - mmengine - INFO - Epoch(val) [1][4/4]    coco/AP: 0.100000  coco/AP .5: 0.250000\n'
           '12/05 10:01:00 - mmengine - INFO - Epoch(test) [4/4]    coco/AP: nan  coco/AP .5: -1.000000  '
           'coco/AR: 1e-05  data_time: 0.01\n')
    metrics = parse_coco_metrics(out)
    assert set(metrics) == {'coco/AP', 'coco/AP .5', 'coco/AR'} and math.isnan(metrics['coco/AP'])
    assert metrics['coco/AP .5'] == -1.0 and metrics['coco/AR'] == 1e-05
