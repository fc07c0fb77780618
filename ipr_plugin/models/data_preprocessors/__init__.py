from .ipr_data_preprocessor import IPRDataPreprocessor

__all__ = ['IPRDataPreprocessor']
