from .dsnt_label import DSNTLabel

__all__ = ['DSNTLabel']
