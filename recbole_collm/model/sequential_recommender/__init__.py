"""Sequential recommenders: the user's history in order (SASRecCTR, DINCTR), trained on labeled rows."""
