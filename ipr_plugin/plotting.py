"""matplotlib for the package's pictures, which are files: the Agg backend, so that drawing needs no display
(a training node, CI, an SSH session) and never opens a window."""
import os
import os.path as osp
from typing import Union

from .arguments import written_whole


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; imported on first use, as most commands draw nothing."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, out_file: Union[str, os.PathLike], **savefig_kwargs) -> None:
    """Write the matplotlib figure ``fig`` to ``out_file`` (PNG, SVG or PDF by its suffix; folders made) whole or
    not at all: a full disk or Ctrl-C leaves the earlier picture, not a truncated one
    (:func:`~ipr_plugin.arguments.written_whole`). The figure is closed either way."""
    out_file = os.fspath(out_file)
    try:
        with written_whole(out_file) as partial:  # the suffix is the partial file's, so the format is given
            fig.savefig(partial, format=osp.splitext(out_file)[1][1:].lower() or 'png', **savefig_kwargs)
    finally:
        pyplot().close(fig)
