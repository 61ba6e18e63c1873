"""What a `zoo visualize` page shows, as plain data (no torch): report.py computes a `Report`, page.py
renders it as HTML, and `Report.to_dict` is stats.json.

    Report(title, subtitle, warning, facts, input_figure, predictions, predictions_figure,
           training_figures, last_epoch, layers=[LayerView(...), ...], version)
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_CHANNELS = 64  # activation maps and filters shown per layer


@dataclass
class Fig:
    file: str  # name of the PNG beside index.html
    data: bytes
    caption: str
    pixelated: bool = False


@dataclass
class LayerView:
    label: str
    name: str
    note: str
    type: str
    shape: list[int]
    params: int
    activation: dict
    weights: dict | None
    figures: list[Fig] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    warning: str
    facts: list[tuple[str, object]]
    input_figure: Fig
    predictions: list[dict]  # zoo.answer.top_k's {label, index, probability}, best first
    predictions_figure: Fig
    training_figures: list[Fig]
    last_epoch: dict
    layers: list[LayerView]
    version: str
    max_channels: int = MAX_CHANNELS

    def figures(self) -> list[Fig]:
        return [
            self.input_figure,
            self.predictions_figure,
            *self.training_figures,
            *(f for layer in self.layers for f in layer.figures),
        ]

    def to_dict(self) -> dict:
        """The numbers of the page (stats.json): predictions and each layer's shape and statistics."""
        return {
            "title": self.title,
            "predictions": self.predictions,
            "layers": [
                {
                    "label": v.label,
                    "name": v.name,
                    "type": v.type,
                    "output_shape": v.shape,
                    "params": v.params,
                    "activation": v.activation,
                    "weights": v.weights,
                    "figures": [f.file for f in v.figures],
                }
                for v in self.layers
            ],
        }
