"""`ditto report` (command.py): the tables, IQM / bootstrap statistics (stats.py), plots
(plots.py) and the paper's numbers (refs.py) for a sweep directory."""
