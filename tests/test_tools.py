"""Every command-line tool runs its own checkout's package, not another one installed in the environment (an
editable install of a second clone, a shared virtualenv): otherwise its outputs land in, and its code comes from,
that other checkout."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = sorted(path.name for path in (REPO / 'tools').glob('*.py'))


@pytest.mark.parametrize('tool', TOOLS)
def test_a_tool_imports_the_package_beside_it(tool, tmp_path):
    checkout = tmp_path / 'checkout'
    (checkout / 'tools').mkdir(parents=True)
    shutil.copy(REPO / 'tools' / tool, checkout / 'tools' / tool)
    (checkout / 'ipr_plugin').mkdir()
    (checkout / 'ipr_plugin' / '__init__.py').write_text("raise SystemExit('imported from the checkout beside it')\n")
    # run from elsewhere: neither the working directory nor PYTHONPATH may lead to the right package
    result = subprocess.run([sys.executable, str(checkout / 'tools' / tool), '--help'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
    assert 'imported from the checkout beside it' in result.stderr, result.stdout[-500:] + result.stderr[-500:]
