"""``--plot FILE.png``: where each config's CPU time per sample goes, (d) and (e) as stacked bars.

The per-step tables answer "how much"; the picture answers "where", at a glance: one bar per config, one
segment per step (a drop-in in the colour of the mmpose transform it replaces), the total and its ratio to the
first config at the bar's end, and with ``--rounds`` every round's total as a dot, so the noise is visible
beside the margin.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..plotting import pyplot, save_figure
from .report import step_breakdown

PANELS = {'pipeline': '(d) train pipeline', 'test_pipeline': '(e) test pipeline'}


def plot_pipelines(results: List[Dict[str, Any]], path: Path) -> Optional[Path]:
    """Draw (d) and (e) of ``results`` (the section's results, the anchor first) to ``path`` (PNG, SVG or PDF,
    by its suffix); ``None`` (nothing written) when neither was measured."""
    fig = draw_pipelines(results)
    if fig is None:
        return None
    save_figure(fig, path, dpi=110, bbox_inches='tight')  # 'tight' keeps the legends below the axes
    return path


def draw_pipelines(results: List[Dict[str, Any]]):
    """The matplotlib figure of :func:`plot_pipelines` (Agg backend), a panel per measured pipeline; ``None``
    when neither was measured."""
    panels = [key for key in PANELS if any((r.get(key) or {}).get('steps') for r in results)]
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 1.2 + 0.6 * len(results)),
                             squeeze=False)
    # one colour per step in both panels; tab20's strong shades first, as its neighbours are pairs
    tab20 = plt.get_cmap('tab20')
    shades = [tab20(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]
    steps: List[str] = []
    for key in panels:
        steps += [row for row in step_breakdown(results, key)[0] if row not in steps]
    colours = {row: shades[i % len(shades)] for i, row in enumerate(steps)}
    for ax, key in zip(axes[0], panels):
        _panel(ax, results, key, colours)
    return fig


def _panel(ax, results: List[Dict[str, Any]], key: str, colours: Dict[str, Any]) -> None:
    labels, by_key = step_breakdown(results, key)
    names = [r['name'] for r in results]
    anchor = by_key[0].get('total')
    widest = max([values.get('total') or 0.0 for values in by_key]
                 + [t or 0.0 for r in results for t in (r.get(key) or {}).get('rounds') or []])
    in_legend = set()  # a step's first segment, and the first round dots, name themselves in the legend
    for y, (result, values) in enumerate(zip(results, by_key)):
        left = 0.0
        for row in labels:
            width = values.get(row)
            if width is None:
                continue
            ax.barh(y, width, left=left, color=colours[row], edgecolor='white', linewidth=0.5,
                    label=None if row in in_legend else ' / '.join(labels[row]))
            in_legend.add(row)
            left += width
        total = values.get('total')
        if total is None:
            ax.text(0, y, '  not measured', va='center', fontsize=8)
            continue
        rounds = [t for t in (result.get(key) or {}).get('rounds') or [] if t is not None]
        if rounds:
            ax.plot(rounds, [y] * len(rounds), 'k|', markersize=14, zorder=3,
                    label=None if 'rounds' in in_legend else 'total in each round')
            in_legend.add('rounds')
        ratio = f' ({total / anchor:.2f}x)' if anchor and y else ''
        ax.text(max([total] + rounds) + 0.015 * widest, y, f'{total:.3g} ms{ratio}', va='center', fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()  # the anchor on top, as in the tables
    ax.set_xlim(0, widest * 1.3 or 1)
    ax.set(xlabel='ms per sample, one thread', title=f'{PANELS[key]}: cost per sample by step')
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)

