"""Reporting what is wrong with a function's arguments, once for the API and once for its command line.

The functions that check their arguments up front (``argument_problems`` in the person-box, ONNX-export and
synthetic-data modules) return ``{argument name: problem}``; these two turn that into the error each caller needs.
:func:`is_url` tells the paths that only loading can check. :func:`check_out_file` makes a tool that writes its
result at the end fail at the start when it could not, or would overwrite one of its inputs; :func:`write_json`
writes that result whole or not at all; :func:`exit_on_input_errors` gives a command line one line, not a traceback.
:func:`read_json`, :func:`load_coco_file` and :func:`load_detection_file` read an input file that the tools take,
naming it when it is not JSON (an image, an empty file), not a COCO annotation file (a detection list) or not a
detection list, instead of the bare parser error.
"""
import argparse
import json
import os
import os.path as osp
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Set


class ToolHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The tools' ``--help``: the description as written, and after each option's help its default, where it has
    one and the help does not say it already (as ``mim``'s and mmpose's tools show theirs)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        default = action.default
        # (identity, not equality: a default of 0 is shown)
        nothing = default is None or default is False or default is argparse.SUPPRESS \
            or (isinstance(default, (str, list, tuple)) and not default)
        if action.option_strings and text and not nothing and 'default' not in text:
            shown = ' '.join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            text += f' (default: {shown.replace("%", "%%")})'
        return text


def add_cfg_options(parser: argparse.ArgumentParser, help: str = 'config overrides') -> None:
    """The tools' ``--cfg-options KEY=VALUE ...`` (mmengine's ``DictAction``, as ``mim`` and mmpose's tools take
    it), with an item that is no ``KEY=VALUE`` (``--cfg-options model.head``, or a path typed after the options)
    refused through ``parser.error`` naming it, not a traceback from inside the action."""
    from mmengine.config import DictAction

    class CfgOptions(DictAction):
        def __call__(self, parser, namespace, values, option_string=None):
            bad = next((value for value in values or () if '=' not in value), None)
            if bad is not None:
                parser.error(f'argument {option_string}: {bad!r} is not KEY=VALUE (e.g. '
                             'train_dataloader.batch_size=32; the positional arguments go before --cfg-options)')
            super().__call__(parser, namespace, values, option_string)

    parser.add_argument('--cfg-options', nargs='+', action=CfgOptions, default=None, help=help)


def is_url(path) -> bool:
    """A path for one of mmengine's file backends (``https://``, ``s3://``, ...): ``os.path`` cannot check it, and
    loading it reports what is wrong."""
    return '://' in str(path)


def device_problem(device: str) -> Optional[str]:
    """What keeps the torch device ``device`` (``cpu``, ``cuda``, ``cuda:1``, ...) from being used here, or None:
    a name torch does not know, or a CUDA device on a machine where torch sees none or fewer. Checked before the
    work: torch says either only when the model is moved, from deep inside it, after the inputs were read."""
    import torch
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        return f'{device!r} is not a device torch knows (cpu, cuda, cuda:1, ...)'
    if parsed.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            return f'{device}: torch sees no CUDA device here (cpu runs on the CPU)'
        if parsed.index is not None and parsed.index >= count:
            return f'{device}: torch sees {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})'
    return None


def device_problems(device: str, name: str = 'device') -> Dict[str, str]:
    """:func:`device_problem` as ``{name: problem}`` (empty when ``device`` can be used), for
    :func:`parser_error` and :func:`raise_problems`."""
    problem = device_problem(device)
    return {name: problem} if problem else {}


def below_minima(args: argparse.Namespace, minima: Mapping[str, int]) -> Dict[str, str]:
    """``{name: problem}`` for each count of ``args`` below its least value in ``minima`` (None: unset, left to
    the tool's default), as :func:`parser_error` and :func:`raise_problems` take them."""
    return {name: f'must be at least {least}, got {getattr(args, name)}' for name, least in minima.items()
            if getattr(args, name) is not None and getattr(args, name) < least}


def raise_problems(problems: Mapping[str, str]) -> None:
    """Raise ``ValueError`` naming every argument in ``problems``; nothing when it is empty."""
    if problems:
        raise ValueError('; '.join(f'{name} {problem}' for name, problem in problems.items()))


def parser_error(parser: argparse.ArgumentParser, problems: Mapping[str, str]) -> None:
    """Exit through ``parser.error`` naming the first argument in ``problems`` as its flag (``--max-images``)."""
    for name, problem in problems.items():
        parser.error(f"argument --{name.replace('_', '-')}: {problem}")


def check_out_file(out_file: Optional[str], what: str = 'output file', inputs: Sequence[Any] = (),
                   in_place: bool = False) -> None:
    """Fail before the work, not after it, when ``out_file`` cannot be written, or is one of the run's ``inputs``
    (an annotation file given as ``--out`` too would be replaced by the result). Folders missing on its path count
    as writable when the nearest existing one is (the writer makes them). ``None`` (no output) passes. Unless
    ``in_place`` (a file appended to), its folder must be writable too: :func:`write_json` and the ONNX export
    write the file beside its place and move it there when whole.

    Raises:
        IsADirectoryError, NotADirectoryError, PermissionError: naming ``out_file`` and what is in the way (for a
            link, in the way of its target).
        ValueError: ``out_file`` is one of ``inputs`` (after resolving links and relative paths), or names no file
            (empty, or ending in ``/``).
        FileNotFoundError: ``out_file`` starts with a ``~`` the shell left unexpanded (``--out=~/x``).
    """
    if out_file is None:
        return
    if not str(out_file) or str(out_file).endswith(('/', os.sep)):  # written as a file named like the folder
        raise ValueError(f'{what} {str(out_file)!r} names no file')
    _refuse_unexpanded_home(str(out_file), f'{what} {out_file}')
    # inputs may be anything a caller was given (a Config object, an mmdet:: name, a URL): only paths compare
    paths = [i for i in inputs if isinstance(i, (str, os.PathLike)) and not is_url(i)]
    same = next((i for i in paths if osp.realpath(i) == osp.realpath(out_file)), None)
    if same is not None:
        raise ValueError(f'{what} {out_file} is an input of this run ({same}): writing it would replace that file')
    real = osp.realpath(out_file)  # a link is written through (written_whole): its target's folder counts
    if osp.isdir(real):
        raise IsADirectoryError(f'{what} {out_file} is a directory')
    parent = _nearest_folder(osp.dirname(real), f'{what} {out_file}')
    target = real if osp.exists(real) else parent
    if not os.access(target, os.W_OK):
        raise PermissionError(f'{what} {out_file}: {target} is not writable')
    if not in_place and not os.access(parent, os.W_OK):
        raise PermissionError(f'{what} {out_file}: its folder {parent} is not writable (the file is written beside '
                              'its place and moved there when whole)')


def _refuse_unexpanded_home(path: str, named: str, folder: bool = False) -> None:
    """FileNotFoundError naming ``named`` when ``path`` (as typed) starts with a folder ``~...`` that does not
    exist, or is one (``folder``): the shell expands ``~`` only at the start of a word, so ``--out=~/x`` reached
    the tool as typed and made a folder named ``~`` in the current one. A file name (``~draft.md``) and a ``~``
    further on are names."""
    parts = Path(path).parts
    if parts and parts[0].startswith('~') and (folder or len(parts) > 1) and not osp.lexists(parts[0]):
        raise FileNotFoundError(f"{named}: {parts[0]} is not expanded here (a shell expands '~' only at the start of "
                                "a word, not after '='): give the option and the path as two words, or the path in "
                                'full')


def _nearest_folder(path: str, named: str) -> str:
    """The nearest existing folder on ``path`` (itself if it exists), which decides whether the missing ones can be
    made; NotADirectoryError naming ``named`` when a file stands there."""
    while not osp.exists(path):
        path = osp.dirname(path)
    if not osp.isdir(path):
        raise NotADirectoryError(f'{named}: {path} is not a directory')
    return path


def check_out_folder(folder: str, what: str = 'output folder') -> None:
    """Fail before the work, not after it, when ``folder`` (made if missing) cannot receive the run's files: a file
    in its place or on its path, or no permission to write where it is or would be made.

    Raises:
        NotADirectoryError, PermissionError: naming ``folder`` and what is in the way.
        FileNotFoundError: ``folder`` starts with a ``~`` the shell left unexpanded (``--out=~/x``).
    """
    _refuse_unexpanded_home(str(folder), f'{what} {folder}', folder=True)
    nearest = _nearest_folder(osp.realpath(folder), f'{what} {folder}')
    if not os.access(nearest, os.W_OK):
        raise PermissionError(f'{what} {folder}: {nearest} is not writable')


def parser_check_out_file(parser: argparse.ArgumentParser, out_file: Optional[str], flag: str = '--out',
                          what: str = 'output file', inputs: Sequence[Any] = (), in_place: bool = False) -> None:
    """:func:`check_out_file` for a command line: exit through ``parser.error`` naming ``flag``."""
    try:
        check_out_file(out_file, what, inputs, in_place)
    except (OSError, ValueError) as error:
        parser.error(f'argument {flag}: {error}')


def parser_check_out_folder(parser: argparse.ArgumentParser, folder: Optional[str], flag: str) -> None:
    """:func:`check_out_folder` for a command line (a file in the way or a read-only place: one line before the
    work, not a traceback from a lock file inside the folder): exit through ``parser.error`` naming ``flag``.
    ``None`` (the tool's default) passes."""
    if folder is not None:
        try:
            check_out_folder(folder, 'folder')
        except OSError as error:
            parser.error(f'argument {flag}: {error}')


@contextmanager
def exit_on_input_errors(prog: str) -> Iterator[None]:
    """For a tool's ``main``: the errors the package raises about a user's inputs (``OSError``: a missing or
    unwritable file; ``ValueError``: a bad value or file content; each naming the culprit) end the tool with that
    one line on stderr and exit status 1 instead of a traceback. (What the argument checks find before any work,
    a missing file named by a flag included, goes through ``parser.error``: usage, one line too, exit status 2.)
    ``IPR_TRACEBACK=1`` in the environment keeps the traceback (an error from deep in the stack looks the same)."""
    try:
        yield
    except (OSError, ValueError) as error:
        if os.environ.get('IPR_TRACEBACK') == '1':
            raise
        text = str(error)
        named = text.lower().startswith((f'{prog}:', f"{prog.replace('_', ' ')}:"))  # the API named its tool
        sys.exit(f"{'' if named else prog + ': '}{text} (IPR_TRACEBACK=1 shows where it was raised)")


def read_json(path: str, what: str = 'file') -> Any:
    """The content of the JSON file ``path``.

    Raises:
        ValueError: ``path`` is not JSON text (empty, an image, a config): the message names ``what`` (``'annotation
            file'``, ...) and ``path``, which neither json's ``Expecting value: line 1 column 1 (char 0)`` nor a
            ``utf-8`` decode error does.
        OSError: ``path`` is missing or a directory (Python's message names it).
    """
    try:
        with open(path, encoding='utf-8-sig') as f:  # -sig: a byte-order mark, as some Windows editors write it
            return json.load(f)
    except UnicodeDecodeError as error:
        byte = error.object[error.start:error.start + 1]
        raise ValueError(f'{what} {path} is not JSON: not UTF-8 text (byte {error.start} is {byte!r}; an image or '
                         'another binary file?)') from error
    except json.JSONDecodeError as error:
        where = f'{error.msg} at line {error.lineno} column {error.colno}'
        why = 'the file is empty' if not error.doc.strip() else where
        raise ValueError(f'{what} {path} is not JSON: {why}') from error


def load_coco_file(path: str, image_ids: Optional[Set[Any]] = None) -> dict:
    """A COCO annotation file, read (:func:`read_json`) and its records checked as the dataset checks them
    (:func:`~ipr_plugin.datasets.body.coco_checks.file_problem`): an object with an ``images`` list, every
    annotation an object with an ``id`` and ``image_id`` (and ``category_id`` when the file lists categories),
    every image of ``image_ids`` with an ``id``, ``file_name``, ``width`` and ``height`` (None: every image; the
    others need only be objects with an ``id``).

    Raises:
        ValueError: naming ``path`` and its first problem (a detection file's list given instead, an image entry
            without ``file_name``, an annotation without ``image_id``, ...).
        OSError: ``path`` is missing or a directory.
    """
    # not at the top: the datasets package imports this module (coco_dataset its is_url), a circular import there
    from .datasets.body.coco_checks import file_problem

    dataset = read_json(path, 'annotation file')
    problem = file_problem(dataset, image_ids)
    if problem:
        raise ValueError(f'annotation file {path}: {problem}')
    return dataset


def load_detection_file(path: str) -> list:
    """A detection (``bbox_file``) file's entries, read by :func:`read_json`; its entries are the caller's to check.

    Raises:
        ValueError: ``path`` is not JSON, or holds no list (an annotation file's object given instead).
        OSError: ``path`` is missing or a directory.
    """
    entries = read_json(path, 'detection file')
    if not isinstance(entries, list):
        raise ValueError(f'detection file {path} holds a {type(entries).__name__}, not a list of detections')
    return entries


@contextmanager
def written_whole(out_file: str) -> Iterator[str]:
    """A temporary path beside ``out_file`` for the block to write, moved onto ``out_file`` when the block ends
    and removed when it fails, so that a failed or interrupted write leaves neither a truncated file nor a damaged
    earlier one. Missing folders are made; a symbolic link is written through, as ``open`` would."""
    target = osp.realpath(out_file)
    os.makedirs(osp.dirname(target), exist_ok=True)
    # the host too: processes of two machines writing one shared folder may have the same number
    partial = f'{target}.{socket.gethostname()}.{os.getpid()}.partial'
    try:
        yield partial
        os.replace(partial, target)
    finally:
        if osp.exists(partial):
            os.remove(partial)


def write_json(out_file: str, obj: Any, **dump_kwargs) -> None:
    """Write ``obj`` as JSON to ``out_file``, whole or not at all (:func:`written_whole`): a value JSON cannot
    hold leaves the earlier file as it was."""
    with written_whole(out_file) as partial, open(partial, 'w', encoding='utf-8') as f:
        json.dump(obj, f, **dump_kwargs)
