"""Differentiable primitive ops, one family per file; each op class sits next to its lowercase function."""
