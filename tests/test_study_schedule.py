"""The study's row scheduler: order, needs, parallelism and stopping (tools/accuracy_study.py --parallel)."""
import threading
import time

import pytest

from ipr_plugin.apis.accuracy_study import _resolve, build_parser, default_workers, row_order, with_needs
from ipr_plugin.apis.study_configs import DEFAULT_VARIANTS, get_variant
from ipr_plugin.apis.study_schedule import locked, next_ready, run_rows

NEEDS = {'start': (), 'a': (), 'b': (), 'ft': ('start', ), 'a-ones': ('a', ), 'ft-ones': ('ft', )}


def _recorder(hold_s: float = 0.0):
    """run() that logs its start and end and keeps the count of rows running at once."""
    log, lock, state = [], threading.Lock(), dict(now=0, most=0)

    def run(name):
        with lock:
            log.append(('start', name))
            state['now'] += 1
            state['most'] = max(state['most'], state['now'])
        time.sleep(hold_s)
        with lock:
            log.append(('end', name))
            state['now'] -= 1
    return run, log, state


def test_one_at_a_time_keeps_the_given_order():
    run, log, state = _recorder()
    order = ['start', 'a', 'b', 'ft', 'a-ones', 'ft-ones']
    run_rows(order, NEEDS.get, run, parallel=1)
    assert [n for event, n in log if event == 'start'] == order and state['most'] == 1


@pytest.mark.parametrize('parallel', [2, 3, 6])
def test_rows_run_side_by_side_and_each_after_what_it_needs(parallel):
    run, log, state = _recorder(hold_s=0.05)
    run_rows(['start', 'a', 'b', 'ft', 'a-ones', 'ft-ones'], NEEDS.get, run, parallel=parallel)
    assert sorted(n for event, n in log if event == 'end') == sorted(NEEDS)
    assert state['most'] == min(parallel, 3)  # start, a and b need nothing; the rest need one of them
    for name, needs in NEEDS.items():
        for need in needs:
            assert log.index(('end', need)) < log.index(('start', name)), (name, need, log)


def test_a_need_outside_the_run_is_not_waited_for():
    assert next_ready(['ft-ones'], [], NEEDS.get) == ['ft-ones']  # 'ft' done earlier (another seed, --reuse)
    assert next_ready(['ft-ones'], ['ft'], NEEDS.get) == []  # still running
    assert next_ready(['a-ones', 'a', 'b'], [], NEEDS.get) == ['a', 'b']


def test_a_cycle_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match='rows waiting on each other: x, y'):
        run_rows(['x', 'y'], {'x': ('y', ), 'y': ('x', )}.get, lambda name: None, parallel=2)


def test_an_exception_out_of_a_row_aborts_the_rest_and_propagates():
    aborted, stop = [], threading.Event()

    def run(name):
        if name == 'a':
            raise KeyError('a bug')
        stop.wait(60)  # a row still running when 'a' fails; on_abort ends it, as kill_running ends a subprocess

    def on_abort():
        aborted.append(True)
        stop.set()

    start = time.monotonic()
    with pytest.raises(KeyError, match='a bug'):
        run_rows(['b', 'a', 'start'], NEEDS.get, run, parallel=2, on_abort=on_abort)
    assert aborted == [True] and time.monotonic() - start < 30  # not the row's 60 s


def test_parallel_must_be_positive():
    with pytest.raises(ValueError, match='at least 1'):
        run_rows(['a'], NEEDS.get, lambda name: None, parallel=0)
    with pytest.raises(SystemExit, match='--parallel must be at least 1'):
        _resolve(build_parser().parse_args(['--tiny', '--parallel', '0']))


def test_the_study_order_lists_every_row_after_what_it_needs():
    # run_rows with parallel=1 runs rows in the study's order, so that order must respect every need
    order = row_order(with_needs([*DEFAULT_VARIANTS, 'ours-Debias-hm', 'ours-Debias-ft']))
    assert order[-2:] == ['ours-L1-ones', 'ours-JS-ones']  # the re-evaluations last
    for i, name in enumerate(order):
        assert all(need in order[:i] for need in get_variant(name).needs), (name, order)


def test_workers_are_shared_between_the_rows_run_at_once(monkeypatch):
    monkeypatch.setattr('os.cpu_count', lambda: 16)
    assert [default_workers(n) for n in (1, 2, 3, 14, 20)] == [14, 7, 4, 1, 1]
    monkeypatch.setattr('os.cpu_count', lambda: 2)
    assert [default_workers(n) for n in (1, 2, 3)] == [2, 1, 1]


def test_locked_say_keeps_whole_lines():
    out = []

    def say(line):  # writes a line in pieces, letting other threads run in between, as a terminal can
        for char in line + '\n':
            out.append(char)
            time.sleep(0)

    safe = locked(say)
    threads = [threading.Thread(target=lambda i=i: [safe(f'row{i}-{k}') for k in range(100)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(''.join(out).splitlines()) == sorted(f'row{i}-{k}' for i in range(4) for k in range(100))
