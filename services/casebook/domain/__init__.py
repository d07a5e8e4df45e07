"""The casebook's pure core: the fold of decisions into rows, submissions, the views."""
