"""curves.png of a run: loss, accuracy and learning rate against the training step, side by side.

Drawn with OpenCV (a dependency already), no plotting library. Each panel has ticks at round values, a grid,
a title and a legend, and a y-range chosen for its quantity, so that noise is not stretched over the whole
height: accuracy from 0 to 1, loss and LR from 0 up to a round value above their largest (typical) value.
The per-step train loss is drawn faint with its moving average on top; per-epoch values are dots on a line.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

PANEL = (560, 400)                      # width, height (px) of one panel; the image is 3 panels wide
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50  # plot-area margins inside a panel
BLUE, ORANGE, GREEN, RED = (180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214)  # BGR
GREY, GRID, INK = (90, 90, 90), (225, 225, 225), (30, 30, 30)
ACCURACY_KEYS = {'train_acc': 'train accuracy', 'test_acc': 'test accuracy', 'top_1': 'val top-1',
                 'top_5': 'val top-5'}

# A series: (legend label, x values, y values, colour, kind) with kind 'faint', 'line' or 'dots'.
Series = Tuple[str, Sequence[float], Sequence[float], Tuple[int, int, int], str]


class Panel(NamedTuple):
    """One plot of curves.png: its title, series and y-range; the legend sits 'top' or 'bottom' right."""
    title: str
    series: List[Series]
    y_range: Tuple[float, float]
    legend_at: str = 'top'


def read_jsonl(path) -> List[dict]:
    """The records of a JSON-lines file ([] if it does not exist); a line cut short by a kill is skipped."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _last_per(records: List[dict], key: str) -> List[dict]:
    """One record per value of `key` (the last one written: a resumed run redoes the steps after its
    checkpoint), in order of that value."""
    latest = {record[key]: record for record in records if key in record}
    return [latest[value] for value in sorted(latest)]


def _column(records: List[dict], key: str, x_key: str = 'step') -> Tuple[np.ndarray, np.ndarray]:
    pairs = [(r[x_key], r[key]) for r in records
             if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and x_key in r]
    xs, ys = (np.array(column, dtype=float) for column in zip(*pairs)) if pairs else (np.zeros(0), np.zeros(0))
    return xs, ys


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` values (fewer at the ends)."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    lo, hi = np.maximum(index - window // 2, 0), np.minimum(index + window // 2 + 1, len(values))
    return (sums[hi] - sums[lo]) / (hi - lo)


def ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> np.ndarray:
    """Round tick values (1, 2 or 5 times a power of ten apart; whole numbers if `integer`) covering
    [lo, hi] with about `count` steps."""
    raw = max((hi - lo) / count if hi > lo else 1.0, 1.0 if integer else 0.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * 0.999)
    return np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step


def round_up(value: float) -> float:
    """The first round tick value at or above `value` (> 0), as the top of a y-axis starting at 0."""
    if not value > 0:
        return 1.0
    marks = ticks(0, value)
    step = marks[1] - marks[0] if len(marks) > 1 else value
    return float(math.ceil(value / step - 1e-9) * step)


def _label(value: float, integer: bool = False) -> str:
    if integer:
        return f'{value / 1000:g}k' if abs(value) >= 10_000 else f'{int(value)}'
    return f'{value:.4g}'


def _faint(colour: Tuple[int, int, int]) -> Tuple[int, int, int]:
    """`colour` at 30% over white."""
    return tuple(int(255 - (255 - c) * 0.3) for c in colour)


def draw_panel(panel: Panel, x_range: Tuple[float, float]) -> np.ndarray:
    """One panel as an image (H, W, 3 uint8 BGR): title, grid, ticks and labels on both axes, the series
    (values outside the y-range are drawn at its edge), a legend."""
    import cv2
    title, series, y_range, legend_at = panel
    width, height = PANEL
    image = np.full((height, width, 3), 255, np.uint8)
    x0, x1, y0, y1 = LEFT, width - RIGHT, TOP, height - BOTTOM  # plot area, y0 at the top
    (x_lo, x_hi), (y_lo, y_hi) = x_range, y_range
    font, aa = cv2.FONT_HERSHEY_SIMPLEX, cv2.LINE_AA

    def to_px(xs, ys) -> np.ndarray:
        px = x0 + (np.asarray(xs, float) - x_lo) / max(x_hi - x_lo, 1e-12) * (x1 - x0)
        py = y1 - (np.clip(np.asarray(ys, float), y_lo, y_hi) - y_lo) / max(y_hi - y_lo, 1e-12) * (y1 - y0)
        return np.stack([px, py], axis=1).round().astype(np.int32)

    for value in ticks(x_lo, x_hi, 6, integer=True):
        (px, _), = to_px([value], [y_lo])
        cv2.line(image, (px, y0), (px, y1), GRID, 1)
        cv2.line(image, (px, y1), (px, y1 + 5), GREY, 1)
        text = _label(value, integer=True)
        size = cv2.getTextSize(text, font, 0.42, 1)[0]
        cv2.putText(image, text, (px - size[0] // 2, y1 + 20), font, 0.42, GREY, 1, aa)
    for value in ticks(y_lo, y_hi, 5):
        (_, py), = to_px([x_lo], [value])
        cv2.line(image, (x0, py), (x1, py), GRID, 1)
        cv2.line(image, (x0 - 5, py), (x0, py), GREY, 1)
        text = _label(value)
        size = cv2.getTextSize(text, font, 0.42, 1)[0]
        cv2.putText(image, text, (x0 - 9 - size[0], py + 5), font, 0.42, GREY, 1, aa)
    cv2.rectangle(image, (x0, y0), (x1, y1), GREY, 1)
    cv2.putText(image, title, (x0, y0 - 14), font, 0.6, INK, 1, aa)
    cv2.putText(image, 'step', ((x0 + x1) // 2 - 14, height - 10), font, 0.45, GREY, 1, aa)

    for _, xs, ys, colour, kind in series:
        if len(xs) == 0:
            continue
        points = to_px(xs, ys)
        if kind == 'faint':
            cv2.polylines(image, [points], False, _faint(colour), 1, aa)
        else:
            cv2.polylines(image, [points], False, colour, 2, aa)
        if kind == 'dots':
            for point in points:
                cv2.circle(image, tuple(int(v) for v in point), 4, colour, -1, aa)

    shown = [(label, colour, kind) for label, xs, _, colour, kind in series if len(xs)]
    rows = 20 * len(shown)
    box_w = 26 + max((cv2.getTextSize(label, font, 0.42, 1)[0][0] for label, _, _ in shown), default=0)
    bx, by = x1 - box_w - 10, (y0 + 8) if legend_at == 'top' else (y1 - rows - 12)
    if shown:
        cv2.rectangle(image, (bx - 6, by - 4), (x1 - 4, by + rows + 2), (255, 255, 255), -1)
        cv2.rectangle(image, (bx - 6, by - 4), (x1 - 4, by + rows + 2), GRID, 1)
    for row, (label, colour, kind) in enumerate(shown):
        cy = by + 10 + 20 * row
        cv2.line(image, (bx, cy), (bx + 18, cy), _faint(colour) if kind == 'faint' else colour, 2, aa)
        cv2.putText(image, label, (bx + 24, cy + 5), font, 0.42, INK, 1, aa)
    return image


def curve_panels(steps: List[Dict], epochs: List[Dict], smoothing: Optional[int] = None
                 ) -> Tuple[Tuple[float, float], List[Panel]]:
    """What curves.png shows: the shared step range and the loss, accuracy and learning-rate panels.

    Parameters
    ----------
    steps : per-step records with 'step' and 'lr' / 'loss' (steps.jsonl); the last record of a step wins.
    epochs : per-epoch records with 'step' (the step count at the epoch's end) and any of 'train_loss',
        'val_loss', 'train_acc', 'test_acc', 'top_1', 'top_5', 'lr' / 'current_lr' (log.jsonl).
    smoothing : moving-average window of the per-step loss (default: 1/20 of the steps, at most half an
        epoch).
    """
    steps, epochs = _last_per(steps, 'step'), _last_per(epochs, 'epoch')
    step_x, step_loss = _column(steps, 'loss')
    lr_x, lr = _column(steps, 'lr')
    last = max([0.0, *step_x, *lr_x, *(r['step'] for r in epochs if 'step' in r)])
    x_range = (0.0, float(last) if last > 0 else 1.0)

    loss: List[Series] = []
    if len(step_loss):
        epoch_steps = min((r['step'] for r in epochs if 'step' in r), default=len(step_loss))
        window = smoothing or max(1, min(len(step_loss) // 20, epoch_steps // 2))
        loss += [('train loss, per step', step_x, step_loss, BLUE, 'faint'),
                 (f'train loss, mean of {window} steps' if window > 1 else 'train loss', step_x,
                  smooth(step_loss, window), BLUE, 'line')]
    else:
        loss.append(('train loss (epoch)', *_column(epochs, 'train_loss'), BLUE, 'dots'))
    loss.append(('val loss', *_column(epochs, 'val_loss'), ORANGE, 'dots'))
    typical = [float(np.percentile(step_loss, 99))] if len(step_loss) else []  # one spike does not set the scale
    typical += [float(ys.max()) for _, _, ys, _, kind in loss if kind != 'faint' and len(ys)]

    colours = iter((BLUE, ORANGE, GREEN, RED))
    accuracy: List[Series] = [(label, *_column(epochs, key), next(colours), 'dots')
                              for key, label in ACCURACY_KEYS.items() if any(key in r for r in epochs)]

    per_step = bool(len(lr))
    if not per_step:
        lr_x, lr = _column(epochs, 'lr' if any('lr' in r for r in epochs) else 'current_lr')
    rates: List[Series] = [('learning rate' + (' per step' if per_step else ' (epoch end)'), lr_x, lr, GREEN,
                            'line' if per_step else 'dots')]
    return x_range, [Panel('loss', loss, (0.0, round_up(max(typical, default=1.0) * 1.05))),
                     Panel('accuracy', accuracy, (0.0, 1.0), legend_at='bottom'),
                     Panel('learning rate', rates, (0.0, round_up(float(lr.max()) * 1.05) if len(lr) else 1.0))]


def draw_curves(path, steps: List[Dict], epochs: List[Dict], smoothing: Optional[int] = None) -> None:
    """Write curves.png (3 panels side by side, see `curve_panels` for the arguments) to `path`."""
    import cv2
    x_range, panels = curve_panels(steps, epochs, smoothing)
    cv2.imwrite(str(path), np.concatenate([draw_panel(panel, x_range) for panel in panels], axis=1))
