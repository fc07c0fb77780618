"""ipr_plugin: Integral Human Pose Regression for the OpenMMLab pose stack."""
import os.path as osp

from setuptools import Extension, find_packages, setup


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(osp.dirname(__file__), 'ipr_plugin', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


# The pins are the ones known to work together (see README, "Environment"): mmcv 2.1.0 must be built with
# ops, mmpose is installed without its chumpy requirement, numpy stays on 1.x for xtcocotools.
RUNTIME = [
    'torch>=2.1',
    'torchvision',
    'numpy>=1.23,<2',
    'opencv-python',
    'simplejpeg',  # IPRLoadImage's JPEG decoder; without it IPRLoadImage decodes with OpenCV
    'mmengine==0.10.7',
    'mmcv==2.1.0',
    'mmdet==3.3.0',
    'mmpose==1.3.2',
    'xtcocotools==1.14.3',
    'json-tricks',
    'munkres',
    'scipy',
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
    version=read_version(),
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
