"""Datasets: the synthetic shapes generator and the checksummed COCO fetcher.

Run as ``python -m validator.datasets shapes ...`` or ``python -m validator.datasets fetch ...``.
"""
