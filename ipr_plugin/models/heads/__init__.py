from .ipr_head import IPRHead

__all__ = ['IPRHead']
