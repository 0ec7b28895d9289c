"""What the TUI reads: registry rows, job-directory followers, planner searches (no Textual)."""
