"""Evaluation: segmentation metrics from one confusion matrix per split."""
