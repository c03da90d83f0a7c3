"""General recommenders: a user and an item, no sequence (MF, LightGCN), trained on labeled rows."""
