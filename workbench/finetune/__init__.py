"""Fine-tuning: LoRA, QLoRA and full weights, on conversations (sft) or raw text (cpt)."""
