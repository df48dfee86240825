"""Operator tools (issue 15): the pipeline's topic layout and its generations, ``trackpipe ops status``,
the rescale protocol (docs/rescaling.md)."""
