"""Experiments over many training runs: the method comparison (:mod:`.compare`), grid sweeps
(:mod:`.sweeps`), and what they measure (:mod:`.metrics`: accuracy, pruning, weight signs, spike rates;
:mod:`.memory`: peak memory; :mod:`.efficiency`: NeuroBench's efficiency metrics)."""
