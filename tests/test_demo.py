"""The main job end to end in miniature (1 epoch on a few synthetic images), so it cannot rot."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipr_plugin.apis.demo import run_demo


def test_demo_runs_end_to_end(repo_root, tmp_path):
    # a space and a comma, which --cfg-options would turn into another path and a list; relative to the folder
    # the tool is run from, not to the repository
    work, data = tmp_path / 'demo work', tmp_path / 'my data, 1'
    out = subprocess.run([sys.executable, str(repo_root / 'tools' / 'demo.py'), '--epochs', '1', '--num-train', '8',
                          '--num-val', '4', '--work-dir', work.name, '--data-root', data.name],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f'writing the synthetic COCO-layout dataset to {data}/' in out.stdout
    assert (data / 'annotations').is_dir() and not (repo_root / data.name).exists()
    for step in ('[1/5]', '[2/5]', '[3/5]', '[4/5]', '[5/5]'):
        assert step in out.stdout
    assert 'pkg_resources' not in out.stdout + out.stderr
    results = json.loads((work / 'demo_results.json').read_text())
    for key in ('untrained', 'trained'):
        assert 0.0 <= results[key]['coco/AP'] <= 1.0
    assert results['pictures'] and all((work / 'predictions').joinpath(p.split('/')[-1]).exists()
                                       for p in results['pictures'])
    assert f'predictions drawn on {len(results["pictures"])} val images' in out.stdout
    # the AP after each measurement, where the files went, and no mmengine line among the demo's own
    assert len(re.findall(r'^      AP \d', out.stdout, re.M)) == 2
    assert f'results: {work / "demo_results.json"}' in out.stdout
    log = re.search(r'^training log: (.+\.log)$', out.stdout, re.M)
    assert log and 'Epoch(train)' in Path(log[1]).read_text()
    assert ' - mmengine - ' not in out.stdout


def test_counts_that_cannot_make_a_demo_are_refused_up_front(repo_root, tmp_path):
    with pytest.raises(ValueError, match=r'num_train must be at least 1, got 0; epochs must be at least 1, got 0'):
        run_demo(work_dir=str(tmp_path / 'work'), data_root=str(tmp_path / 'data'), num_train=0, epochs=0)
    assert not (tmp_path / 'data').exists()
    out = subprocess.run([sys.executable, 'tools/demo.py', '--num-val', '0', '--data-root', str(tmp_path / 'data')],
                         cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and 'argument --num-val: must be at least 1, got 0' in out.stderr
