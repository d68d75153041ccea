"""Outputs: the reference table (markdown/CSV), per-class CSV, summary JSON."""
