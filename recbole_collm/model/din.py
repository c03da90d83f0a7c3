"""DIN over the positive history (RecBole's DIN, fed the plugin's labeled rows)."""
from __future__ import annotations

from recbole.model.sequential_recommender.din import DIN as RecBoleDIN
from recbole.utils import ModelType


class DIN(RecBoleDIN):
    """RecBole's DIN is already pointwise (BCE on the label, sigmoid scores). Declared a context
    model so that RecBole feeds it labeled rows whose ``item_id_list`` is the user's last positive
    items across splits (the paper's protocol), not RecBole's own sequence augmentation."""

    type = ModelType.CONTEXT
