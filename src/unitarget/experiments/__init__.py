"""The experiments layer: each module runs one study and writes its report.

Studies (``unitarget.studies``, ``unitarget.simulation``) compute and return result objects and
write no report; reports (``unitarget.reports``) render results they are given. This package and
``unitarget.reproduce`` are the only modules that import both, so neither of the other two layers
depends on the other's internals and no import cycle can form between them.
"""
