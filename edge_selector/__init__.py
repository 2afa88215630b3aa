"""The edge selector: runs on each camera device.

Computes embeddings and uncertainty with the ONNX model, keeps only informative, non-redundant
frames in a bounded SQLite buffer and uploads them when a link exists. It depends on ``curator``
and never on ``server``; its only contract with the server is :mod:`curator.wire`.
"""
