"""Record production: the pure accumulator, the I/O sender, and the publishers."""
