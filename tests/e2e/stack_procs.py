"""The whole service as processes for the whole-stack stories (deploy/local/scratch.py)."""

from deploy.local.scratch import ROOT, Running, Shape, in_thread, whole_stack

__all__ = ["ROOT", "Running", "Shape", "in_thread", "whole_stack"]
