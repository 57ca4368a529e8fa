"""The core: the trial spec, models, recipes, the clock and the one timed training loop."""
