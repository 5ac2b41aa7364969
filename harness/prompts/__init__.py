"""Prompt suites: the cl100k tokenizer, the corpus, the task templates and the SlimLM
construction."""
