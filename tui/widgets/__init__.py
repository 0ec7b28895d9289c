"""Textual widgets of the TUI: virtual table, charts, GPU grid, log view, dialogs."""
