"""Ask a Qwen chat model one question with plain transformers (no qwenlab).

Usage:  python run_qwen.py MODEL "question"
MODEL is a local model folder or a Hub id such as Qwen/Qwen3-0.6B (downloaded on first use).
"""
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path = sys.argv[1] if len(sys.argv) > 1 else "Qwen/Qwen3-0.6B"
question = sys.argv[2] if len(sys.argv) > 2 else "请用一句话介绍你自己。"

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = "auto" if device == "cuda" else torch.float32      # most laptop CPUs compute bf16 slowly
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)

messages = [{"role": "user", "content": question}]
inputs = tokenizer.apply_chat_template(
    messages, add_generation_prompt=True, enable_thinking=False,   # Qwen3: answer directly; other templates ignore it
    return_dict=True, return_tensors="pt",
).to(model.device)
output_ids = model.generate(**inputs, max_new_tokens=256, do_sample=False)
new_ids = output_ids[0][inputs["input_ids"].shape[1]:]             # only the new tokens
print(tokenizer.decode(new_ids, skip_special_tokens=True))
