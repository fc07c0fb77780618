"""``--rounds N``: the single-threaded CPU pipeline measurements (d) and (e) repeated, the configs alternating.

On a shared machine the speed drifts by several per cent within minutes, as much as the margin of the CPU
pipeline target (a ratio against mmpose's pipeline). Rounds after the first run only (d) and (e), each config
in a fresh worker as in the first, in the order forward, backward, forward, ... so that a steady drift weighs on
every config alike. The tables then hold medians over the rounds, and a line per measurement gives every
round's totals and each round's ratio to the anchor, taken from the same round: runs seconds apart, not minutes.
"""
import statistics
from collections import OrderedDict
from typing import Any, Dict, List, Optional

from .spec import MEASUREMENTS

ROUND_MEASUREMENTS = ('pipeline', 'test_pipeline')
TITLES = {'pipeline': '(d) CPU pipeline', 'test_pipeline': '(e) CPU test pipeline'}


def round_order(num_configs: int, round_index: int) -> List[int]:
    """Config indices in the order round ``round_index`` (from 0) runs them: forward in even rounds, backward in
    odd ones."""
    order = list(range(num_configs))
    return order if round_index % 2 == 0 else order[::-1]


def repeat_skip(skip: List[str]) -> List[str]:
    """What a round after the first skips: every measurement but (d) and (e), and those the command skips."""
    return [m for m in MEASUREMENTS if m not in ROUND_MEASUREMENTS or m in skip]


def merge_rounds(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One config's results from every round (the first, full one first) -> one result.

    Each round measurement measured in any round becomes its rounds' medians: per step, and the total as the
    median of the rounds' totals (so with an even count the rows need not add up to it exactly). Its ``rounds``
    lists every round's total, ``None`` where that round did not measure it. A round's error or cut-off is kept
    as ``"<measurement> (round k)"`` (listed with the section's errors) or under ``rounds_cut_off``, without
    blanking a cell that another round measured; the first round's stay as they are for what no round measured.
    """
    if len(runs) == 1:
        return runs[0]
    merged = dict(runs[0], errors=dict(runs[0].get('errors', {})), cut_off=list(runs[0].get('cut_off', [])))
    for number, run in enumerate(runs[1:], start=2):
        for key, err in run.get('errors', {}).items():
            merged['errors'][f'{key} (round {number})'] = err
        if run.get('cut_off'):
            merged.setdefault('rounds_cut_off', []).append(number)
    for key in ROUND_MEASUREMENTS:
        per_round = [_measured(run, key) for run in runs]
        measured = [m for m in per_round if m is not None]
        if not measured:
            continue
        if per_round[0] is None:  # the first round failed or was cut off here, a later one measured it
            if key in merged['errors']:
                merged['errors'][f'{key} (round 1)'] = merged['errors'].pop(key)
            if key in merged['cut_off']:
                merged['cut_off'].remove(key)
                merged.setdefault('rounds_cut_off', []).insert(0, 1)
        steps = OrderedDict((name, statistics.median(m['steps'][name] for m in measured if name in m['steps']))
                            for name in measured[0]['steps'])
        merged[key] = dict(measured[0], steps=steps,
                           ms_per_sample=statistics.median(m['ms_per_sample'] for m in measured),
                           rounds=[None if m is None else m['ms_per_sample'] for m in per_round])
    if not merged['cut_off']:
        del merged['cut_off']
    return merged


def _measured(run: Dict[str, Any], key: str) -> Optional[Dict[str, Any]]:
    errors = run.get('errors', {})
    return run.get(key) if key not in errors and 'worker' not in errors else None


def rounds_lines(results: List[Dict[str, Any]]) -> List[str]:
    """Per round measurement: each config's totals by round, and each round's ratio to the first config."""
    lines = []
    for key in ROUND_MEASUREMENTS:
        rows = [(r['name'], (r.get(key) or {}).get('rounds')) for r in results]
        if not any(totals for _, totals in rows):
            continue
        anchor_name, anchor = rows[0]
        parts = [f'{name} ' + ', '.join(_ms(t) for t in totals) for name, totals in rows if totals]
        for name, totals in rows[1:]:
            if not (totals and anchor):
                continue
            ratios = [t / a for t, a in zip(totals, anchor) if t is not None and a]
            if ratios:
                # three decimals: a target such as 0.6x is judged on these
                parts.append(f'{name} / {anchor_name} by round ' + ', '.join(f'{q:.3f}' for q in ratios)
                             + f' (median {statistics.median(ratios):.3f}, highest {max(ratios):.3f})')
        lines.append(f'{TITLES[key]}, total ms/sample by round: ' + '; '.join(parts))
    return lines


def _ms(total: Optional[float]) -> str:
    return 'not measured' if total is None else f'{total:.3g}'
