"""Data preparation for fine-tuning: readers (CSV, TSV, JSONL), cleaning, stratified splits, dynamic padding and
length bucketing.

Example:
    >>> from nnforge import data
    >>> table = data.read_table("reviews.csv")                                   # doctest: +SKIP
    >>> text_col, label_col = data.detect_columns(table)                         # doctest: +SKIP
    >>> texts, kept, report = data.clean_texts(table.column(text_col))           # doctest: +SKIP
    >>> train, val, test = data.stratified_split(labels, (0.8, 0.1, 0.1), seed=0)  # doctest: +SKIP
"""
from .batching import PaddedBatches, bucket_batches, first, pad_sequences
from .cleaning import CleanReport, clean_text, clean_texts
from .errors import DataError
from .readers import Table, detect_columns, read_table
from .split import stratified_split

__all__ = ["CleanReport", "DataError", "PaddedBatches", "Table", "bucket_batches", "clean_text", "clean_texts",
           "detect_columns", "first", "pad_sequences", "read_table", "stratified_split"]
