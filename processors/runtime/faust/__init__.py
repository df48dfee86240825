"""The Faust worker: topology (``app``), per-stage batch port (``port``), consumer fixes (``consumer``),
table storage (``store``), and every use of faust-streaming's private members (``private``)."""
