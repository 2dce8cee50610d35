"""Batch scoring of whole files through a Tau model: the `tau-score` command and `score_file()`."""

from clients.score.options import ScoreOptions, ScoringError, UsageError
from clients.score.runner import ScoreSummary, score_file

__all__ = ["ScoreOptions", "ScoreSummary", "ScoringError", "UsageError", "score_file"]
