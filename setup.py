"""ipr_plugin: Integral Human Pose Regression for the OpenMMLab pose stack."""
import os.path as osp

from setuptools import Extension, find_packages, setup


def read_version() -> dict:
    namespace: dict = {}
    with open(osp.join(osp.dirname(__file__), 'ipr_plugin', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace


VERSION = read_version()
# Ranges, so that the package installs beside the OpenMMLab stack a user already has (the releases
# tools/setup_env.sh pins are the ones measured, see README, "Environment"); the plugin checks the same ranges
# when it is imported. mmcv needs its ops, which have no wheel for recent torch: install the stack first and
# this package with --no-deps (mmpose's own chumpy requirement does not build).
OPENMMLAB = [f'{name}>={low},<{high}' for name, (low, high) in VERSION['SUPPORTED'].items()]
RUNTIME = [
    'torch>=2.1',
    'torchvision',
    # xtcocotools publishes wheels for numpy 1.x up to Python 3.11; from 3.12 on it is built against numpy 2,
    # which the plugin supports (README, "Environment"), and numpy 1.x has no wheels from Python 3.13 on
    'numpy>=1.23,<2; python_version<"3.12"',
    'numpy>=1.23; python_version>="3.12"',
    'opencv-python<5; python_version<"3.12"',  # OpenCV 5 needs numpy 2
    'opencv-python; python_version>="3.12"',
    'simplejpeg>=1.7',  # IPRLoadImage's JPEG decoder (strict mode from 1.7); without it IPRLoadImage uses OpenCV
    *OPENMMLAB,
    'xtcocotools>=1.12',
    'json-tricks',
    'munkres',
    'scipy>=1.9',  # special.ndtri_exp (IPRRandomBBoxTransform)
    'matplotlib',
    'six',
]

# IPRLoadImage's region decoding (ipr_plugin/datasets/transforms/jpeg_region.py): optional, so that a machine
# without libjpeg-turbo's headers (>= 1.5; Debian/Ubuntu: libjpeg-dev) or a compiler still installs the package,
# which then decodes whole images as before.
JPEG_REGION = Extension('ipr_plugin.datasets.transforms._jpeg_region',
                        sources=['ipr_plugin/datasets/transforms/_jpeg_region.c'], libraries=['jpeg'], optional=True)

setup(
    name='ipr_plugin',
    version=VERSION['__version__'],
    description='Integral Human Pose Regression (soft-argmax) head, codec and losses for mmpose',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['ipr_plugin', 'ipr_plugin.*']),
    ext_modules=[JPEG_REGION],
    python_requires='>=3.9',
    install_requires=RUNTIME,
    extras_require={
        'onnx': ['onnx', 'onnxruntime'],  # tools/export_onnx.py
        'tests': ['pytest', 'onnx', 'onnxruntime', 'pycocotools'],
        'mim': ['openmim==0.3.9'],
    },
    # the configs, as OpenMMLab packages ship theirs: ipr_plugin/.mim/configs links to configs/ in the checkout
    package_data={'ipr_plugin': ['.mim/configs/*.py', '.mim/configs/*/*.py']},
    # the tools for an installed wheel, which has no tools/ folder
    entry_points={'console_scripts': [
        'ipr-benchmark=ipr_plugin.benchmark:main',
        'ipr-accuracy-study=ipr_plugin.apis.accuracy_study:main',
        'ipr-background-share=ipr_plugin.apis.background_share:main',
        'ipr-gpu-measurements=ipr_plugin.apis.gpu_measurements:main',
        *(f"ipr-{name.replace('_', '-')}=ipr_plugin.cli.{name}:main"
          for name in ('check_data', 'demo', 'export_onnx', 'make_person_boxes', 'make_synthetic_coco',
                       'plot_training')),
    ]},
    zip_safe=False,
)
