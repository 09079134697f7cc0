"""File formats, read and written without torch or pickle: safetensors (``safetensors_format``), PyTorch zip
checkpoints (``torch_zip``, restricted unpickler), GGUF (``gguf`` + ``quant`` dequantisation)."""
