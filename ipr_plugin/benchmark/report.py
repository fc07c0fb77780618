"""The results as markdown: the machine, the settings, the main table with ratios, the pipeline breakdown."""
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..markdown import machine_line, markdown_table
from .rounds import rounds_lines

# (row label, measurement, how to read the value from that measurement's result)
MAIN_ROWS: Sequence[tuple] = (
    ('(a) train img/s', 'train', lambda r: r['per_s']),
    ('(b) loader samples/s', 'loader', lambda r: r['per_s']),
    ('(c) eval img/s (flip)', 'eval', lambda r: r['per_s']),
    ('(d) CPU pipeline ms/sample', 'pipeline', lambda r: r['ms_per_sample']),
    ('(e) CPU test pipeline ms/sample', 'test_pipeline', lambda r: r['ms_per_sample']),
    ('(f) main process: train samples to device, ms/sample', 'host', lambda r: r['train_ms_per_sample']),
    ('(f) main process: val samples to device, ms/sample', 'host', lambda r: r['val_ms_per_sample']),
    ('(f) main process: val predictions to metric, ms/sample', 'host', lambda r: r.get('val_post_ms_per_sample')),
    ('(g) final COCO evaluation, s (images as in the settings)', 'metric', lambda r: r['compute_s']),
    ('(g) final COCO evaluation, instances/s', 'metric', lambda r: r['per_s']),
    ('(g) final COCO evaluation, peak host memory above its start, MiB', 'metric', lambda r: r.get('peak_mib')),
    ('(g) the same evaluation again, s', 'metric', lambda r: r.get('again_s')),
    ('(g) host memory kept by the second evaluation, MiB', 'metric', lambda r: r.get('kept_mib')),
    ('(g) val dataset from its detection file, s (same scale)', 'metric', lambda r: r.get('dataset_s')),
    ('(g) train dataset at train2017 scale (as scaled), s', 'metric', lambda r: r.get('train_dataset_s')),
    ('(g) train dataset, peak host memory, MiB', 'metric', lambda r: r.get('train_dataset_peak_mib')),
    ('peak GPU memory, train (MiB)', 'train', lambda r: r.get('peak_mem_mib')),
    ('GPU util in train window (%)', 'train', lambda r: (r.get('gpu_util') or {}).get('mean')),
    ('(a) main process waiting for batches (% of train window)', 'train', lambda r: r.get('data_wait_pct')),
    ('(c) main process waiting for batches (% of eval window)', 'eval', lambda r: r.get('data_wait_pct')),
)


def _gpu_name(results: List[Dict[str, Any]]) -> Optional[str]:
    # from a worker, which has CUDA up
    return next((r['gpu_name'] for r in results if r.get('gpu_name')), None)


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return 'n/a'
    return f'{value:.0f}' if abs(value) >= 100 else f'{value:.3g}'


def _failed(result: Dict[str, Any], key: str) -> bool:
    errors = result.get('errors', {})
    # 'worker': the whole process failed (with --rounds, a later round may still have measured ``key``)
    return key in errors or ('worker' in errors and key not in result)


def _cell(result: Dict[str, Any], key: str, read: Callable) -> Optional[float]:
    return read(result[key]) if key in result and not _failed(result, key) else None


def _status(result: Dict[str, Any], key: str) -> str:
    # Why a cell holds no number.
    if _failed(result, key):
        return 'error'
    if key in result.get('cut_off', ()):
        return 'cut off'
    return 'skipped' if key not in result else 'n/a'


def _ratio_header(results: List[Dict[str, Any]]) -> List[str]:
    return [f'{r["name"]} / {results[0]["name"]}' for r in results[1:]]


def _row(label: str, values: List[Optional[float]], statuses: List[str]) -> List[str]:
    cells = [_fmt(v) if v is not None else s for v, s in zip(values, statuses)]
    base = values[0]
    ratios = [f'{v / base:.2f}' if v is not None and base else 'n/a' for v in values[1:]]
    return [label] + cells + ratios


def main_table(results: List[Dict[str, Any]]) -> str:
    """Rows (a)-(f), peak memory and GPU utilisation; a column per config, then each ratio to the first."""
    header = ['metric'] + [r['name'] for r in results] + _ratio_header(results)
    rows = [_row(label, [_cell(r, key, read) for r in results], [_status(r, key) for r in results])
            for label, key, read in MAIN_ROWS]
    return markdown_table(header, rows, numeric=True)


def _step_key(name: str) -> str:
    """A plugin drop-in (``IPRPackInputs``) shares the row of the mmpose transform it subclasses
    (``PackPoseInputs``)."""
    if not name.startswith('IPR'):
        return name
    from mmpose.registry import TRANSFORMS
    cls = TRANSFORMS.get(name)
    base = next((c for c in getattr(cls, '__mro__', ())[1:] if c.__module__.startswith('mmpose.')), None)
    return base.__name__ if base is not None else name


def step_breakdown(results: List[Dict[str, Any]], key: str = 'pipeline') -> Tuple[Dict[str, List[str]],
                                                                               List[Dict[str, Optional[float]]]]:
    """The steps of measurement ``key`` ('pipeline' or 'test_pipeline') across configs: row key -> the transform
    names shown in that row (the union in pipeline order; a drop-in shares the row of the mmpose transform it
    replaces), and per config, row key -> ms/sample ('total' None where not measured)."""
    labels: Dict[str, List[str]] = {}
    by_key: List[Dict[str, Optional[float]]] = []
    for r in results:
        pipeline = r.get(key) or {}
        by_key.append({'total': pipeline.get('ms_per_sample')})
        for name, value in pipeline.get('steps', {}).items():
            row = _step_key(name)
            by_key[-1][row] = value
            names = labels.setdefault(row, [])
            if name not in names:
                names.append(name)
    return labels, by_key


def pipeline_table(results: List[Dict[str, Any]], key: str = 'pipeline') -> str:
    """ms/sample of every step of the train pipeline (``key='test_pipeline'``: the test pipeline), the union
    of the configs' steps in pipeline order, and the total; a drop-in replacement is shown in the row of the
    transform it replaces ("LoadImage / IPRLoadImage")."""
    labels, by_key = step_breakdown(results, key)
    title = 'test pipeline step' if key == 'test_pipeline' else 'step'
    header = [f'{title} (ms/sample, 1 thread)'] + [r['name'] for r in results] + _ratio_header(results)
    statuses = ['-' if key in r else _status(r, key) for r in results]
    rows = [_row(' / '.join(labels.get(row, [row])), [values.get(row) for values in by_key], statuses)
            for row in list(labels) + ['total']]
    return markdown_table(header, rows, numeric=True)


def config_lines(results: List[Dict[str, Any]]) -> List[str]:
    """One line per config: its file and the settings that matter for speed, and any changes for the device."""
    lines = []
    for r in results:
        setup = ', '.join(f'{k} {v}' for k, v in r.get('setup', {}).items())
        notes = ''.join(f'; **{n}**' for n in r.get('notes', []))
        lines.append(f'- {r["name"]}: `{r["config"]}`' + (f' ({setup})' if setup else '') + notes)
    return lines


def window_line(results: List[Dict[str, Any]]) -> str:
    """Each timed window's length in seconds, and where GPU utilisation came from."""
    parts = []
    for r in results:
        spans = [f'{key} {r[key]["elapsed_s"]:.3g}' for key in ('train', 'loader', 'eval') if key in r]
        util = (r.get('train') or {}).get('gpu_util') or {}
        source = f' (GPU util: {util["source"] or "n/a"}, {util["samples"]} samples)' if util else ''
        parts.append(f'{r["name"]}: {", ".join(spans) or "none"}{source}')
    return 'Timed windows (s): ' + '; '.join(parts)


def phase_line(results: List[Dict[str, Any]]) -> Optional[str]:
    """The Runner measurements' time outside their windows: what a run of the tool costs beyond the windows."""
    parts = [f'{r["name"]} {key}: ' + ', '.join(f'{name.replace("_", " ")} {s:.3g}'
                                                 for name, s in r[key]['phases_s'].items())
             for r in results for key in ('train', 'eval') if 'phases_s' in (r.get(key) or {})]
    return 'Outside the windows (s): ' + '; '.join(parts) if parts else None


def _metric_split_line(results: List[Dict[str, Any]], split: str, label: str, title: str) -> Optional[str]:
    # One part of (g) split into its steps, for each config that has the split.
    parts = [f'{r["name"]} ({r["metric"][label]}): ' + ', '.join(f'{k} {v:.3g}' for k, v in r['metric'][split].items())
             for r in results if (r.get('metric') or {}).get(split)]
    return f'{title}: ' + '; '.join(parts) if parts else None


def cocoeval_line(results: List[Dict[str, Any]]) -> Optional[str]:
    """xtcocotools' own share of (g), as it printed it: what no metric class changes."""
    return _metric_split_line(results, 'cocoeval_s', 'metric', "Of (g), xtcocotools' own steps as it timed them (s)")


def dataset_checks_line(results: List[Dict[str, Any]]) -> Optional[str]:
    """The input checks of a checking val dataset class, each timed on its own: its cost beyond mmpose's build."""
    return _metric_split_line(results, 'dataset_checks_s', 'dataset',
                              "Of (g)'s val dataset build, the input checks, each run again on its own (s)")


def error_lines(results: List[Dict[str, Any]]) -> List[str]:
    lines = [f'- {r["name"]} {key}: {err}' for r in results for key, err in r.get('errors', {}).items()]
    return lines + [f'- {r["name"]} metric, train dataset: {r["metric"]["train_dataset_error"]}'
                    for r in results if 'train_dataset_error' in (r.get('metric') or {})]


def render_section(results: List[Dict[str, Any]], command: str, settings: List[str],
                   label: Optional[str] = None, now: Optional[datetime] = None) -> str:
    """A dated markdown section: command, machine, settings, configs, main table, pipeline breakdown."""
    now = now or datetime.now(timezone.utc)
    title = f'## {now:%Y-%m-%d %H:%M} UTC' + (f' — {label}' if label else '')
    parts = [title, '', f'- Command: `{command}`', f'- Date: {now:%Y-%m-%d %H:%M:%S} UTC',
             f'- Machine: {machine_line(_gpu_name(results))}']
    extra = [line for line in (phase_line(results), cocoeval_line(results), dataset_checks_line(results)) if line]
    extra += rounds_lines(results)
    parts += [f'- {s}' for s in settings] + [f'- {window_line(results)}'] + [f'- {line}' for line in extra]
    parts += ['- Configs (ratios are against the first):'] + ['  ' + line for line in config_lines(results)]
    errors = error_lines(results)
    if errors:
        parts += ['- Errors:'] + ['  ' + line for line in errors]
    cut = [f'{r["name"]}: {", ".join(r["cut_off"])}' for r in results if r.get('cut_off')]
    cut += [f'{r["name"]}: round {k}' for r in results for k in r.get('rounds_cut_off', ())]
    if cut:
        parts.append('- Cut off by the time limit, not measured: ' + '; '.join(cut))
    parts += ['', main_table(results), '']
    if any('pipeline' in r for r in results):
        parts += [pipeline_table(results), '']
    if any('test_pipeline' in r for r in results):
        parts += [pipeline_table(results, 'test_pipeline'), '']
    return '\n'.join(parts)
