"""Speech encoders: HuBERT on transformers' HubertModel (which MERT builds on too)."""

from zoo.environment import require_version

# before HubertModel is imported: on an older transformers HuBERT and MERT failed inside their forward
require_version("transformers", "5.16", "HuBERT and MERT run HubertModel's layers as laid out in")
