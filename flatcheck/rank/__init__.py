"""`flatcheck rank`: rank correlations between sharpness measures and robustness outcomes over a zoo.

stats      Spearman, Kendall tau-b and their bootstrap intervals (numpy only)
extract    the measures and outcomes of an audit report document
analysis   rank_reports(docs, names) -> Ranking; the same-audit check; loading reports
"""

from .analysis import MIN_CHECKPOINTS, Pair, Ranking, check_comparable, load_reports, rank_reports
from .extract import Quantity, gather

__all__ = [
    "MIN_CHECKPOINTS",
    "Pair",
    "Quantity",
    "Ranking",
    "check_comparable",
    "gather",
    "load_reports",
    "rank_reports",
]
