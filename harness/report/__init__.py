"""Reports rendered from run directories: aggregation, tables (Markdown/HTML/CSV) and plots."""
