"""Heatmap fixtures shared by the ops tests: a grid, a Gaussian peak, cell-to-normalised coordinates."""
import torch

from ipr_plugin.ops import make_grid

H, W = 24, 32


def grids(h=H, w=W, dtype=torch.float32):
    return make_grid(w, dtype=dtype), make_grid(h, dtype=dtype)


def peak_logits(cx, cy, h=H, w=W, amp=5.0, s=2.0, dtype=torch.float64):
    """Gaussian-shaped peak of height ``amp`` at cell coordinates (cx, cy) on a background of exactly 0."""
    y = torch.arange(h, dtype=dtype).unsqueeze(-1)
    x = torch.arange(w, dtype=dtype)
    return amp * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))


def cells_to_normalized(cx, cy, h=H, w=W):
    return torch.tensor([(2 * cx + 1) / w - 1, (2 * cy + 1) / h - 1], dtype=torch.float64)
