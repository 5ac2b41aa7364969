"""Quality evaluation on DocAssist (SlimLM, arXiv 2411.09944): BLEU, ROUGE, STS, Self-BLEU,
intent accuracy."""
