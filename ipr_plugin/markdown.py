"""What the measuring tools share when they write ``BENCHMARKS.md``: its tables, its sections, the machine.

``tools/benchmark.py`` and ``tools/accuracy_study.py`` (and ``tools/background_share.py``'s table) append to the
same file, so a table, a new file's header and a machine line look alike whichever tool wrote them.
"""
import os
import platform
from pathlib import Path
from typing import Optional, Sequence, Union

from .locks import flocked

HEADER = ('# Benchmarks\n\nSections appended by `tools/benchmark.py` and `tools/accuracy_study.py` (newest last); '
          'earlier sections are never rewritten.\n')


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: bool = False) -> str:
    """A markdown table; ``numeric``: right-align every column but the first (ratios and timings line up).

    A ``|`` inside a cell (a config name, a note) would end the cell early, so it is written as ``/``.
    """
    align = ['---'] + [('---:' if numeric else '---')] * (len(header) - 1)
    lines = [_row(header), '|' + '|'.join(align) + '|']
    return '\n'.join(lines + [_row(row) for row in rows])


def _row(cells: Sequence[object]) -> str:
    return '| ' + ' | '.join(str(c).replace('|', '/') for c in cells) + ' |'


def append_section(path: Union[str, os.PathLike], section: str) -> None:
    """Append ``section`` to the markdown file ``path``, creating it (and its folder) with :data:`HEADER` first;
    whole or not at all (a failed write leaves the file as it was)."""
    path_obj = Path(path)
    # two tools appending at once: one header, and each section whole (the lock is held until it is written)
    with flocked(str(path_obj), exclusive=True), open(path_obj, 'ab', buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        text = memoryview(((HEADER if size == 0 else '') + '\n' + section).encode('utf-8'))
        try:
            while text:
                text = text[f.write(text):]
        except BaseException:  # a full disk, Ctrl-C: the file as it was, not a cut table the next section runs on
            os.ftruncate(f.fileno(), size)
            raise


def machine_line(gpu: Optional[str]) -> str:
    """The machine, alike in every tool's section: CPU model and cores, ``gpu`` (its name, or None for none: the
    caller finds it without creating a CUDA context in this process), torch and its CUDA, the OpenMMLab versions,
    Python, and the JPEG decoders of ``IPRLoadImage``, which set the data loader's speed."""
    import mmcv
    import mmengine
    import mmpose
    import torch

    from .datasets.transforms.jpeg import jpeg_decoder
    from .datasets.transforms.jpeg_region import region_decoder
    return (f'{cpu_model()}, {os.cpu_count()} cores; GPU: {gpu or "none"}; torch {torch.__version__} (CUDA '
            f'{torch.version.cuda}); mmpose {mmpose.__version__}, mmengine {mmengine.__version__}, mmcv '
            f'{mmcv.__version__}; Python {platform.python_version()}; JPEG decode in IPRLoadImage: {jpeg_decoder()}, '
            f'of training crops\' regions (decode_region): {region_decoder()}')


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` says."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
