"""Shared fixtures.

Tests that need the real COCO sample look for it in ``../shared/data/coco_sample`` (beside the clone) or in
``$IPR_SHARED_DIR/data/coco_sample``. Where it is absent they skip with the path in the reason, except under
``CI=true``, where they fail: CI must never pass by skipping them.
"""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get('IPR_SHARED_DIR', REPO_ROOT.parent / 'shared')).resolve()
COCO_SAMPLE = SHARED_DIR / 'data' / 'coco_sample'


def require_path(path: Path) -> Path:
    """Return ``path`` if it exists; otherwise skip (user clone) or fail (CI)."""
    if path.exists():
        return path
    msg = f'needs {path}, which is absent'
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(f'{msg} (CI=true: data tests may not skip)')
    pytest.skip(msg)


@pytest.fixture(scope='session')
def coco_sample() -> Path:
    """The 4-image COCO val2017 sample with keypoints and AP-56 detector boxes."""
    return require_path(COCO_SAMPLE)


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True)
def benchmarks_untouched():
    """No test writes into the repository's BENCHMARKS.md: the tools append to it by default, and a test that
    forgets its own ``--out`` would leave a section of skipped rows there to be committed."""
    path = REPO_ROOT / 'BENCHMARKS.md'
    before = path.stat().st_mtime_ns if path.exists() else None
    yield
    after = path.stat().st_mtime_ns if path.exists() else None
    assert after == before, f'this test wrote into {path}; give the tool an --out under tmp_path'
