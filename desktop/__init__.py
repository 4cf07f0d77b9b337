"""Grainbox on a desktop: the instrument played without the box, for hearing a model and showing it.

`python -m desktop demo` runs the box's own runtime (runtime/) in this process against a real Pd on
pd/main.pd, with a scripted performer (desktop/performer.py) or the Pd window's virtual knobs in place of
the knob box, records what Pd plays and draws it (desktop/demo_plot.py). Nothing here is installed on the
box: it needs matplotlib and soundfile (the `train` extra) and a display for `--gui`.
"""
