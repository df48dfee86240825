"""Alert rules wiring (issue 14): the engine driven by batches and ticks, in both modes."""
