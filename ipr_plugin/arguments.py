"""Reporting what is wrong with a function's arguments, once for the API and once for its command line.

The functions that check their arguments up front (``argument_problems`` in the person-box, ONNX-export and
synthetic-data modules) return ``{argument name: problem}``; these two turn that into the error each caller needs.
"""
import argparse
from typing import Mapping


def raise_problems(problems: Mapping[str, str]) -> None:
    """Raise ``ValueError`` naming every argument in ``problems``; nothing when it is empty."""
    if problems:
        raise ValueError('; '.join(f'{name} {problem}' for name, problem in problems.items()))


def parser_error(parser: argparse.ArgumentParser, problems: Mapping[str, str]) -> None:
    """Exit through ``parser.error`` naming the first argument in ``problems`` as its flag (``--max-images``)."""
    for name, problem in problems.items():
        parser.error(f"argument --{name.replace('_', '-')}: {problem}")
