"""Shared fixtures.

Tests that need the real COCO sample look for it in ``../shared/data/coco_sample`` (beside the clone) or in
``$IPR_SHARED_DIR/data/coco_sample``. Where it is absent they skip with the path in the reason, except under
``CI=true``, where they fail: CI must never pass by skipping them.
"""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get('IPR_SHARED_DIR') or REPO_ROOT.parent / 'shared').resolve()  # set but empty: unset
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


@pytest.fixture(scope='session', autouse=True)
def in_the_checkout():
    """Tests name configs relative to the checkout (``configs/...``), as its tools are documented: run from another
    folder, they failed to find them."""
    os.chdir(REPO_ROOT)


BENCHMARKS = REPO_ROOT / 'BENCHMARKS.md'


def _benchmarks_version():
    return BENCHMARKS.stat().st_mtime_ns if BENCHMARKS.exists() else None


@pytest.fixture(scope='session', autouse=True)
def benchmarks_untouched_by_fixtures():
    """As :func:`benchmarks_untouched`, for what a module's fixtures do before any of its tests starts."""
    before = _benchmarks_version()
    yield
    assert _benchmarks_version() == before, f'a test or a fixture wrote into {BENCHMARKS}; give the tool an --out'


@pytest.fixture(autouse=True)
def benchmarks_untouched():
    """No test writes into the repository's BENCHMARKS.md: the tools append to it by default, and a test that
    forgets its own ``--out`` would leave a section of skipped rows there to be committed."""
    before = _benchmarks_version()
    yield
    assert _benchmarks_version() == before, f'this test wrote into {BENCHMARKS}; give the tool an --out under tmp_path'
