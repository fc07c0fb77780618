"""mmpose's pose visualizer, drawing keypoints under numpy 2 too."""
import warnings
from typing import Union

import numpy as np
import torch
from mmpose.registry import VISUALIZERS

with warnings.catch_warnings():
    # importing it asks mmengine whether packages are installed, through pkg_resources, whose deprecation notice
    # would then greet every import of this plugin (the config's custom_imports included)
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    from mmpose.visualization import PoseLocalVisualizer


@VISUALIZERS.register_module()
class IPRPoseLocalVisualizer(PoseLocalVisualizer):
    """``PoseLocalVisualizer`` whose OpenCV backend takes a keypoint radius given as a one-element array.

    mmpose 1.3 draws each keypoint with ``radius=np.array([self.radius])`` and its OpenCV backend turns that into
    an int with ``int(radius)``: numpy 1.25 deprecated converting a 1-d array to a scalar, and numpy 2.5 refuses it,
    so every drawing of keypoints (``--show-dir``, ``MMPoseInferencer``, the demo's pictures) fails there with
    ``TypeError: only 0-dimensional arrays can be converted to Python scalars``. Same arguments as mmpose's.
    """

    def draw_circles(self, center: Union[np.ndarray, torch.Tensor], radius: Union[np.ndarray, torch.Tensor],
                     face_colors='none', alpha: float = 1.0, **kwargs) -> 'IPRPoseLocalVisualizer':
        """mmpose's ``draw_circles``; with the OpenCV backend, a one-element ``radius`` (pixels) as a scalar."""
        if self.backend == 'opencv' and getattr(radius, 'ndim', 0) > 0 and np.size(radius) == 1:
            radius = radius.item()
        return super().draw_circles(center, radius, face_colors=face_colors, alpha=alpha, **kwargs)
