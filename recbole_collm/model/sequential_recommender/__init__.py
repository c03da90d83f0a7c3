"""Sequential recommenders: the user's history in order (SASRec, DIN), trained on labeled rows."""
