"""The accuracy study's outputs: the table, the curve, the plot, JSON and ``BENCHMARKS.md``.

The score calibration they report is computed in :mod:`.study_calibration`.
"""
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..arguments import write_json, written_whole
from ..markdown import append_section, markdown_table
from ..plotting import pyplot, save_figure
from .study_calibration import load_predictions

# CocoMetric's keys, as the table names them.
# AP (M) and AP (L) beside AP: the hard split labels small people too, which COCO leaves unlabelled (its
# keypoint AP covers medium and large people), and OKS at their scale is set by single pixels
METRIC_KEYS: Tuple[Tuple[str, str], ...] = (('AP', 'coco/AP'), ('AP50', 'coco/AP .5'), ('AP75', 'coco/AP .75'),
                                            ('AP (M)', 'coco/AP (M)'), ('AP (L)', 'coco/AP (L)'), ('AR', 'coco/AR'))


# ---------------------------------------------------------------------------------------------- predictions
def nonfinite_predictions(predictions_file: Path) -> Tuple[int, int]:
    """How many dumped predictions have a NaN or infinite keypoint, of how many.

    A diverged model (NaN loss) still gets a COCO AP: xtcocotools' OKS of a NaN keypoint is NaN, and its
    ``ious < threshold`` test is False for NaN, so with constant scores (mmpose's integral heads) every NaN pose
    matches a person. Such a row's AP must not be read as a result.
    """
    predictions = load_predictions(predictions_file)
    bad = sum(not np.isfinite(np.asarray(p['pred_instances']['keypoints'], float)).all() for p in predictions)
    return int(bad), len(predictions)


def diverged(run: Mapping[str, Any]) -> bool:
    """Whether a trained run's final predictions contain non-finite keypoints (see :func:`nonfinite_predictions`)."""
    return bool((run.get('nonfinite_predictions') or (0, 0))[0])


def _any_seed_diverged(result: Mapping[str, Any]) -> bool:
    return any(diverged(run) for run in result['seeds'].values())


# ---------------------------------------------------------------------------------------------- machine
def gpu_name() -> Optional[str]:
    """The GPUs' names from nvidia-smi (None without one), without creating a CUDA context in this process."""
    import torch

    if not (shutil.which('nvidia-smi') and torch.cuda.is_available()):
        return None
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return ', '.join(sorted(set(out.stdout.split('\n')) - {''})) or None


# ---------------------------------------------------------------------------------------------- outputs
def _fmt(value: Optional[float], digits: int = 3) -> str:
    return '—' if value is None or (isinstance(value, float) and np.isnan(value)) else f'{value:.{digits}f}'


def table_rows(results: Mapping[str, Mapping[str, Any]]) -> List[List[str]]:
    """Rows (variant, the metrics of :data:`METRIC_KEYS`, train time s, notes); with several seeds, means (and each
    seed's AP)."""
    rows = []
    for name, res in results.items():
        if res.get('error'):
            state = 'cut off' if res.get('cut_off') or res.get('stopped') else 'FAILED'
            rows.append([name, state, *[''] * len(METRIC_KEYS), f'{res["notes"]}; error: {res["error"]}'])
            continue
        row = [name]
        for key, _ in METRIC_KEYS:
            per_seed = [s[key] for s in res['seeds'].values() if s.get(key) is not None]
            cell = _fmt(float(np.mean(per_seed))) if per_seed else '—'
            if len(per_seed) > 1 and key == 'AP':
                cell += ' (' + ' / '.join(_fmt(v) for v in per_seed) + ')'
            row.append(cell)
        times = [s['train_time_s'] for s in res['seeds'].values() if s.get('train_time_s') is not None]
        row.append(_fmt(float(np.mean(times)), 1) if times else '—')
        notes = res['notes'] + (f'; seeds {", ".join(res["seeds"])}' if len(res['seeds']) > 1 else '')
        notes += ''.join(f'; seed {seed} not counted: {why}' for seed, why in res.get('seed_errors', {}).items())
        bad = [s['nonfinite_predictions'] for s in res['seeds'].values() if diverged(s)]
        if bad:
            row[1] += ' (NaN)'
            notes = (f'**diverged**: {bad[0][0]}/{bad[0][1]} final predictions have NaN keypoints, so this AP is '
                     f'an artefact of COCO evaluation (NaN poses count as matches), not a result; ' + notes)
        row.append(notes)
        rows.append(row)
    return rows


TABLE_HEADER = ('variant', *(name for name, _ in METRIC_KEYS), 'train time s', 'notes')


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """The table for the terminal (notes left out)."""
    columns = len(TABLE_HEADER) - 1
    widths = [max(len(str(r[i])) for r in [TABLE_HEADER, *rows]) for i in range(columns)]
    return '\n'.join('  '.join(str(c).ljust(w) for c, w in zip(r[:columns], widths)) for r in [TABLE_HEADER, *rows])


def _first_seed(result: Mapping[str, Any]) -> Optional[str]:
    """The seed a row's curve is reported for: its first (the one every row of the study ran)."""
    return next(iter(result['seeds']), None)


def curve_table(results: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
    """AP after each evaluated iteration (first seed; a row cut off by its time limit: the evaluations it made),
    or None with a single evaluation."""
    curves = {n: r['seeds'][_first_seed(r)].get('curve', []) for n, r in results.items()
              if not r.get('error') and r['seeds']}
    curves.update({n: next(iter(r['cut_off'].values())) for n, r in results.items() if r.get('cut_off')})
    iters = sorted({p['iter'] for c in curves.values() for p in c})
    if len(iters) < 2:
        return None
    rows = [[n + (' (diverged)' if _any_seed_diverged(results[n]) else '')
             + (' (cut off)' if results[n].get('cut_off') else '')]
            + [_fmt(next((p['AP'] for p in c if p['iter'] == i), None)) for i in iters]
            for n, c in curves.items() if c]
    return markdown_table(['variant'] + [f'AP @ {i}' for i in iters], rows)


def plotted_curve(name: str, results: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """``name``'s AP curve (first seed) as the plot draws it: a row fine-tuned from another that is in
    ``results`` (its ``start``) continues from the start's last point, its iterations counted after the start's,
    so that the picture shows what fine-tuning adds to the model it began with."""
    runs = results[name]['seeds']
    seed = _first_seed(results[name])
    curve = runs[seed].get('curve', []) if runs else []
    start = results.get(results[name].get('start') or '', {})
    before = start.get('seeds', {}).get(seed, {}).get('curve', [])  # a fine-tuned row's start has its seed
    if not curve or not before:
        return list(curve)
    offset = before[-1]['iter']
    return [dict(before[-1])] + [dict(p, iter=p['iter'] + offset) for p in curve]


def plot(calibrations: Sequence[Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Mean normalised error per score bin (counts on the points), and the AP curves where there are several
    evaluations; PNG, matplotlib's Agg backend."""
    plt = pyplot()
    curves = {n: plotted_curve(n, results) for n, r in results.items() if not r.get('error') and r['seeds']}
    with_curves = any(len(c) > 1 for c in curves.values())
    fig, axes = plt.subplots(1, 2 if with_curves else 1, figsize=(12 if with_curves else 6.5, 4.5), squeeze=False)
    ax = axes[0, 0]
    calibrations = [c for c in calibrations if not c.get('error')]
    for cal in calibrations:
        x = [b['mean_score'] for b in cal['bins']]
        y = [b['mean_error'] for b in cal['bins']]
        ax.plot(x, y, 'o-', label=f'{cal["variant"]} (Spearman {_fmt(cal["spearman"])}, '
                                  f'{cal["num_keypoints"]} keypoints)')
        for b in cal['bins']:
            ax.annotate(str(b['count']), (b['mean_score'], b['mean_error']), textcoords='offset points',
                        xytext=(0, 6), ha='center', fontsize=7)
    ax.set(xlabel='keypoint score (bin mean; quantile bins)', ylabel='mean error / sqrt(GT area)',
           title='Keypoint error against score')
    if calibrations:
        ax.legend(fontsize=8)
    if with_curves:
        ax = axes[0, 1]
        for name, curve in curves.items():
            if curve:
                bad = _any_seed_diverged(results[name])
                ax.plot([p['iter'] for p in curve], [p['AP'] for p in curve], 'x:' if bad else 'o-',
                        label=name + (' (diverged: NaN poses, AP meaningless)' if bad else ''))
        fine_tuned = any(results[n].get('start') in curves for n in curves)
        ax.set(xlabel='iteration' + (' (a fine-tuned row continues from its start)' if fine_tuned else ''),
               ylabel='COCO AP (val)', title='AP during training (first seed)')
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def calibration_lines(calibrations: Sequence[Mapping[str, Any]], chosen: Optional[str],
                      ours_requested: bool = True) -> List[str]:
    """The Spearman line(s) of the markdown and the terminal; ``ours_requested``: the run asked for a trained
    variant of ours (without one, an empty calibration is expected, not a failure)."""
    if not calibrations:
        why = 'no trained variant of ours succeeded' if ours_requested else 'the run trains no variant of ours'
        return [f'Spearman (keypoint score vs error): not computed ({why})']
    lines = []
    for cal in calibrations:
        if cal.get('error'):
            lines.append(f'Spearman (keypoint score vs normalised error), {cal["variant"]}: FAILED: {cal["error"]}')
            continue
        role = 'our best variant by AP' if cal['variant'] == chosen else 'reference'
        lines.append(f'Spearman (keypoint score vs normalised error), {cal["variant"]} ({role}): '
                     f'rho = {_fmt(cal["spearman"])} (p = {_fmt(cal["p_value"], 2)}; {cal["num_keypoints"]} '
                     f'keypoints of {cal["num_matched"]}/{cal["num_predictions"]} matched predictions'
                     + (f'; {cal["num_nonfinite"]} keypoints with a non-finite score or position left out'
                        if cal.get('num_nonfinite') else '') + ')'
                     + (' — nan: fewer than 3 keypoints, or scores or errors constant'
                        if np.isnan(cal['spearman']) else ''))
    return lines


def _workers(count: int, rows: int) -> str:
    # Rows run side by side share the machine: their train times are not a single row's speed.
    at_once = f' per row, {rows} rows at once (train times include their contention)' if rows > 1 else ''
    return f'{count} data worker{"" if count == 1 else "s"}{at_once}'


def _width(base_channels: int) -> str:
    if base_channels == 64:
        return ''
    return f' with base width {base_channels} (deconv stack {4 * base_channels} channels)'


def _fine_tuning(report: Mapping[str, Any]) -> str:
    """What the budget line adds when rows start from another row's weights."""
    starts = sorted({r['start'] for r in report['results'].values() if r.get('start')})
    if not starts:
        return ''
    iters = report['settings'].get('finetune_iters') or report['settings']['iters']
    return (f' (a row with a start, {", ".join(starts)}: {iters} iterations from that row\'s final weights, '
            'with its own warm-up and cosine)')


def markdown_section(report: Mapping[str, Any], rows: Sequence[Sequence[str]], plot_rel: str,
                     json_rel: str) -> str:
    """The dated section appended to ``BENCHMARKS.md``."""
    s, d = report['settings'], report['data']
    title = 'Accuracy study' + (' (tiny CI mode: a smoke run, not a benchmark)' if s['tiny'] else '')
    parts = [
        f'## {title}: {report["date"]}', '',
        f'Command: `{report["command"]}`', '',
        f'Date: {report["date"]}. Machine: {report["machine"]}. Total wall time {report["wall_s"]:.0f} s.', '',
        f'Budget (every variant): ResNet-{s["depth"]}{_width(s.get("base_channels", 64))} from scratch at '
        f'{s["input_size"]}x{s["input_size"]} input'
        f'{" (tiny mode: small input)" if s["tiny"] else ""}; {s["iters"]} iterations of batch {s["batch_size"]}'
        f'{_fine_tuning(report)}; '
        f'Adam lr {s["lr"]:g}, '
        f'{f"linear warm-up {w} iterations then " if (w := s["warmup_iters"]) else "no warm-up, "}cosine to 0 '
        f'(by iteration); '
        f'seed(s) {", ".join(map(str, s["seeds"]))}; {"bf16 AMP" if s["amp"] else "fp32"} training, fp32 '
        f'validation with flip test (a row whose config evaluates in fp16, ours-L1-fast, keeps that); '
        f'device {s["device"]}, {_workers(s["workers"], s.get("parallel", 1))}.', '',
        f'Data: synthetic COCO layout, difficulty hard: {d["num_train_images"]} train images '
        f'({d["num_train_instances"]} people) and {d["num_val_images"]} val images ({d["num_val_instances"]} '
        f'people) at {s["image_size"][0]}x{s["image_size"][1]}; {d["num_detections"]} detector boxes (jittered, '
        f'misses, duplicates, false positives). Metric: CocoMetric on these boxes.', '',
        markdown_table(TABLE_HEADER, rows), '',
        'Train time: seconds of training iterations, validation excluded. mmpose rows: mmpose\'s installed '
        'configs with only data paths, size and budget changed; ours: this repository\'s configs with the '
        'fast data path (ipr_collate, pinned memory, IPRDataPreprocessor).', '',
    ]
    curves = curve_table(report['results'])
    if curves:
        parts += ['AP during training (first seed):', '', curves, '']
    parts += [f'- {line}' for line in calibration_lines(report['calibration'], report['calibration_variant'],
                                                     report.get('ours_requested', True))]
    parts += [f'- Calibration plot: `{plot_rel}`; per-variant numbers: `{json_rel}`.',
              '- Matching for the calibration: each prediction to the GT person of its image whose box has the '
              'highest IoU (>= 0.5) with the detector box; error = distance / sqrt(GT area), GT keypoints with '
              'v > 0.', '']
    return '\n'.join(parts) + '\n'


def _jsonable(value: Any) -> Any:
    """``value`` with NaN as null and numpy/Path values as plain ones, so the file is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return str(value) if isinstance(value, Path) else value


def run_stamp(out_dir: Path, now: Optional[datetime] = None) -> str:
    """This run's name for its files under ``out_dir/docs``: UTC to the second (``20261207-203812``), with
    ``-2``, ``-3`` ... where a run of the same second wrote there already."""
    base = (now or datetime.now(timezone.utc)).strftime('%Y%m%d-%H%M%S')
    stamp, n = base, 1
    while any(output_paths(out_dir, stamp)[key].exists() for key in ('json', 'plot')):
        n += 1
        stamp = f'{base}-{n}'
    return stamp


def output_paths(out_dir: Path, stamp: str) -> Dict[str, Path]:
    """What :func:`write_outputs` writes under ``out_dir``: this run's ``json`` and ``plot``
    (``docs/accuracy_study_<stamp>.json``, ``docs/calibration_<stamp>.png``), the same two again as the latest
    study's (``latest_json``, ``latest_plot``: ``docs/accuracy_study.json``, ``docs/calibration.png``) and
    ``markdown`` (``BENCHMARKS.md``, appended to).

    The section names this run's own files: a later study writing into the same ``out_dir`` replaces the latest
    two, never the files an older section cites."""
    docs = out_dir / 'docs'
    return dict(json=docs / f'accuracy_study_{stamp}.json', plot=docs / f'calibration_{stamp}.png',
                latest_json=docs / 'accuracy_study.json', latest_plot=docs / 'calibration.png',
                markdown=out_dir / 'BENCHMARKS.md')


def write_outputs(report: Dict[str, Any], out_dir: Path, stamp: str) -> Dict[str, Path]:
    """Write this run's JSON and plot (named by ``stamp``, :func:`run_stamp`), copy them to the latest study's
    names and append to ``BENCHMARKS.md``, all under ``out_dir``; returns the paths (:func:`output_paths`)."""
    paths = output_paths(out_dir, stamp)
    plot(report['calibration'], report['results'], paths['plot'])
    write_json(str(paths['json']), _jsonable(report), indent=1, allow_nan=False)
    for key in ('json', 'plot'):
        with written_whole(str(paths[f'latest_{key}'])) as partial:
            shutil.copyfile(paths[key], partial)
    rows = table_rows(report['results'])
    section = markdown_section(report, rows, os.path.relpath(paths['plot'], out_dir),
                               os.path.relpath(paths['json'], out_dir))
    append_section(paths['markdown'], section)
    return paths
