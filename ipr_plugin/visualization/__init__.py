from .pose_local_visualizer import IPRPoseLocalVisualizer

__all__ = ['IPRPoseLocalVisualizer']
