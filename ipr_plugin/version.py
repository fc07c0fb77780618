__version__ = '0.1.0'

# The OpenMMLab releases the plugin works with: (lowest, first one not supported). setup.py's install_requires
# and the check at import (ipr_plugin/compat.py) both read this. Lowest: mmpose 1.2 brought OKSLoss (head_inputs),
# mmengine 0.10.3 is_musa_available (CPU launches), mmcv 2.0.0 is mmpose 1.x's floor; highest: mmdet 3.3, which the
# person-box tool uses, wants mmcv < 2.2, and mmpose 1.4 / mmengine 1.0 are unreleased.
SUPPORTED = {
    'mmengine': ('0.10.3', '1.0.0'),
    'mmcv': ('2.0.0', '2.2.0'),
    'mmpose': ('1.2.0', '1.4.0'),
    'mmdet': ('3.0.0', '3.4.0'),
}
