"""General recommenders: a user and an item, no sequence (MF, LightGCNCTR), trained on labeled rows, and
ItemRate (an item's positive rate, a reference)."""
