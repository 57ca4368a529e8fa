"""Analysis and report: statistics over seeds, the notebook's questions, figures, HTML / Markdown."""
