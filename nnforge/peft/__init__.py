"""Parameter-efficient fine-tuning: LoRA adapters compatible with Hugging Face PEFT's files."""
from .config import LoraConfig
from .lora import LoraLinear
from .peft_model import LoraModel, PeftModel, get_peft_model

__all__ = ["LoraConfig", "LoraLinear", "LoraModel", "PeftModel", "get_peft_model"]
