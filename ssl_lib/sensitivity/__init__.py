"""Protocol sensitivity: how much each headline number and verdict depends on choices the paper
leaves open.

:data:`VARIANTS` (``variants``) names each choice, the default it replaces and where the
alternative comes from; ``compute`` scores them for a study's models from cached inputs (and
caches what it scores); ``compare`` measures the change per model with a paired interval, the
rank correlation of the models with the default's ranking, and the scorecard verdicts that flip.
"""

from . import _protocols, _training  # noqa: F401  (they register the variants)
from .compare import (CHANGE_RULE, FLIP_RULE, RANK_RULE, MemoComparer, changes, independent_difference,
                      rank_correlations, substitute, verdict_flips, verdict_table)
from .compute import ScoreSet, recorded_defaults, score_variants
from .variants import VARIANTS, ModelContext, Score, Variant, variant_table

__all__ = ["VARIANTS", "Variant", "Score", "ModelContext", "variant_table", "ScoreSet", "score_variants",
           "recorded_defaults", "changes", "independent_difference", "rank_correlations", "substitute",
           "verdict_flips", "verdict_table", "MemoComparer", "CHANGE_RULE", "RANK_RULE", "FLIP_RULE"]
