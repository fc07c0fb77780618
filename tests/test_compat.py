"""The installed OpenMMLab stack is checked against the supported ranges when the plugin is imported, and the
wheel asks for the same ranges."""
import pytest

from ipr_plugin import compat
from ipr_plugin.version import SUPPORTED


@pytest.mark.parametrize('older, newer', [('0.10.3', '0.10.7'), ('0.9.1', '0.10.0'), ('2.0.0rc4', '2.0.0'),
                                          ('1.3.0.dev0', '1.3.0'), ('1.3', '1.3.1'), ('2.13.0', '2.14.1+cu130'),
                                          ('1.0.0b1', '1.0.0rc1'), ('2.0.0rc1', '2.0.0rc4'), ('1.0.0.dev1', '1.0.0a1')])
def test_releases_sort_as_pip_sorts_them(older, newer):
    assert compat.release(older) < compat.release(newer)
    assert compat.release('2.1') == compat.release('2.1.0') == compat.release('2.1.0+cpu')


def test_release_refuses_what_is_no_version():
    with pytest.raises(ValueError, match="not a version: 'unknown'"):
        compat.release('unknown')


def test_the_stack_installed_here_is_in_range():
    found = {name: compat._installed(name) for name in SUPPORTED}
    assert None not in found.values() and compat.version_problems(found) == {}


def test_a_stack_out_of_range_is_named_package_by_package():
    problems = compat.version_problems({'mmpose': '1.1.0', 'mmcv': '2.0.0rc4', 'mmengine': '1.0.0', 'mmdet': None,
                                        'numpy': '0.1'})  # not a checked package
    assert problems == {'mmpose': 'mmpose 1.1.0 is installed', 'mmcv': 'mmcv 2.0.0rc4 is installed',
                        'mmengine': 'mmengine 1.0.0 is installed', 'mmdet': 'mmdet is not installed'}
    # pip's <2.2.0 excludes 2.2.0's pre-releases; a version that cannot be read is left to the imports
    assert compat.version_problems({'mmcv': '2.2.0rc1', 'mmpose': '1.4.0.dev0', 'mmengine': '1.0.0rc0'}) == {
        'mmcv': 'mmcv 2.2.0rc1 is installed', 'mmpose': 'mmpose 1.4.0.dev0 is installed',
        'mmengine': 'mmengine 1.0.0rc0 is installed'}
    assert compat.version_problems({'mmcv': 'unknown', 'mmpose': ''}) == {}
    lows = {name: low for name, (low, _) in SUPPORTED.items()}
    assert compat.version_problems(lows) == {}  # the lowest release is in, the highest out


def test_the_check_raises_what_mmengine_passes_on_naming_what_to_install(monkeypatch):
    """mmengine rewraps an ImportError from a config's custom_imports as a PYTHONPATH problem; a RuntimeError
    reaches the user as it is."""
    compat.check_versions()  # the stack here
    monkeypatch.setitem(SUPPORTED, 'mmpose', ('9.0.0', '10.0.0'))
    with pytest.raises(RuntimeError) as error:
        compat.check_versions()
    installed = compat._installed('mmpose')
    assert str(error.value) == f'ipr_plugin: mmpose {installed} is installed, and it needs "mmpose>=9.0.0,<10.0.0"'
    assert not isinstance(error.value, ImportError)
