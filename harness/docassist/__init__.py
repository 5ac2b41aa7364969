"""DocAssist: the study's fine-tuning and evaluation data (documents -> chunks -> annotations)."""
