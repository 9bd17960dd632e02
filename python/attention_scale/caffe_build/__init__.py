"""Obtaining, patching and building Caffe with the three Attention-to-Scale layers.

Everything in this subpackage uses the standard library only: it runs before the project's
virtual environment (and pycaffe) exist.
"""
