"""Training exports: the corpus in each training platform's own format (``trajstream export FORMAT``)."""
