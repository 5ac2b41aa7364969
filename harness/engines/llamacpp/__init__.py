"""llama.cpp as a second engine, side by side with TVM on the same model, prompts and runner.

GGUF ``Q4_0`` is llama.cpp's form of the study's quantization: 4-bit weights in groups of 32
with one fp16 scale per group (``q4f16_1`` packs the same bits differently). A bundle holds the
model as GGUF Q4_0, made by llama.cpp's own quantizer (``llama_model_quantize``) from either the
source GGUF or an fp16 GGUF written from the model's tensors (``gguf_export.py``). The runner
feeds token ids from the model's own tokenizer, exactly as it does for TVM, so both engines
process identical inputs.

Optional: ``pip install -e ".[llamacpp]"`` (llama-cpp-python builds llama.cpp from source), or the
binding alone (``CMAKE_ARGS=-DLLAMA_BUILD=OFF``) over the harness-built host kit
(``harness.kits.llamacpp``), whose ``libllama.so`` the engine then loads.
"""
