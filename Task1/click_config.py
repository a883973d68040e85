"""Where a click model's configuration is stored: one name for the trainer that writes it and
the predictor that reads it (no torch, no nnU-Net imported here)."""

CLICK_CONFIG_KEY = "autopet_click_config"   # key in every click checkpoint
CLICK_CONFIG_FILE = "click_config.json"     # the same, next to plans.json in the model folder
