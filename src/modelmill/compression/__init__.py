"""Smaller, faster models from a bundle, each a derived bundle with its lineage: ONNX export
(``export``), int8 / half-precision quantisation and pruning behind an accuracy gate
(``compress``)."""
