"""Reports over merged traces: summary tables (pure numpy) and plots (matplotlib, Agg)."""
