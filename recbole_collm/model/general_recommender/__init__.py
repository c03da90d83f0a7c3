"""General recommenders: a user and an item, no sequence (MF, LightGCNCTR), trained on labeled rows."""
