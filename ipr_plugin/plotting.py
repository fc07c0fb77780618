"""matplotlib for the package's pictures, which are files: the Agg backend, so that drawing needs no display
(a training node, CI, an SSH session) and never opens a window."""


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; imported on first use, as most commands draw nothing."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt
