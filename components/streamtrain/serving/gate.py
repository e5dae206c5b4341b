"""The quality gate: whether a version the evaluator scored is good enough to serve.

A version is judged once it has been scored on at least `min_records` test records. It is promoted when its metric
reaches the absolute floor and is not worse than the promoted version's by more than the tolerance; otherwise it is
rejected, with the numbers in the reason.

>>> rule = Rule("accuracy", min_records=500, floor=0.6, tolerance=0.02)
>>> judge(rule, {"accuracy": 0.91}, 500, promoted=None)
('promoted', 'accuracy 0.910 (500 records) reaches the floor 0.6 and no version is promoted yet')
>>> judge(rule, {"accuracy": 0.87}, 800, promoted=0.91)[0]
'rejected'
>>> judge(rule, {"loss": 0.2}, 500, promoted=None) is None  # not scored on the gate's metric yet
True
>>> judge(Rule("loss", 500, floor=0.0, tolerance=0.05), {"loss": 0.31}, 500, promoted=0.28)[0]
'promoted'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Metric = Literal["accuracy", "auc", "loss"]


@dataclass(frozen=True)
class Rule:
    metric: Metric
    min_records: int
    floor: float  # accuracy/AUC: the least accepted; loss: the most accepted (0: none)
    tolerance: float

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "loss"


def judge(rule: Rule, metrics: dict[str, float | None], records: int,
          promoted: float | None) -> tuple[Literal["promoted", "rejected"], str] | None:
    """('promoted' | 'rejected', reason), or None while the version has too few records or no value yet."""
    value = metrics.get(rule.metric)
    if records < rule.min_records or value is None:
        return None
    shown = f"{rule.metric} {value:.3f} ({records} records)"
    if rule.higher_is_better and value < rule.floor:
        return "rejected", f"{shown} is below the floor {rule.floor:g}"
    if not rule.higher_is_better and rule.floor > 0 and value > rule.floor:
        return "rejected", f"{shown} is above the ceiling {rule.floor:g}"
    if promoted is None:
        bound = f"the floor {rule.floor:g}" if rule.higher_is_better or rule.floor > 0 else "no bound"
        return "promoted", f"{shown} reaches {bound} and no version is promoted yet"
    worse = promoted - value if rule.higher_is_better else value - promoted
    if worse > rule.tolerance:
        return "rejected", f"{shown} is {worse:.3f} worse than the promoted {promoted:.3f} (tolerance " \
                           f"{rule.tolerance:g})"
    return "promoted", f"{shown} is within {rule.tolerance:g} of the promoted {promoted:.3f} or better"
