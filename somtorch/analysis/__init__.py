"""Analysis of trained SOMs: knowledge transfer, catalogue columns and quality metrics."""

from somtorch.analysis.labels import KnowledgeTransfer, catalogue_columns, merge_catalogue, transfer_labels

__all__ = ["KnowledgeTransfer", "catalogue_columns", "merge_catalogue", "transfer_labels"]
