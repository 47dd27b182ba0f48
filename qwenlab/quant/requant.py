"""Other GGUF quantizations of one GGUF file, written with ``gguf`` (llama.cpp's own Python package, no
compiler): every 2-D weight de-quantized and quantized again to ``Q8_0`` or ``Q4_0`` — the formats LM
Studio and Ollama offer next to ``Q4_K_M`` — so ``qwenlab bench quant --quality`` can measure what each
costs on held-out data.

Taught in ``07_quantization.ipynb`` (section 7, quality on held-out data).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REQUANT_TYPES", "requantized_gguf"]

#: Target formats: name -> (type of the transformer blocks' weights, type of token_embd / output).
#: llama.cpp's own ``Q4_0`` keeps the output layer at a higher precision too (Q6_K, which ``gguf`` cannot
#: write); Q8_0 stands in for it here.
REQUANT_TYPES = {"Q8_0": ("Q8_0", "Q8_0"), "Q4_0": ("Q4_0", "Q8_0")}
_FILE_TYPE = {"Q8_0": 7, "Q4_0": 2}  # llama.cpp's LLAMA_FTYPE_MOSTLY_*


def requantized_gguf(source: str | os.PathLike, target: str, folder: str | os.PathLike | None = None) -> Path:
    """The GGUF ``source`` re-quantized to ``target`` (``"Q8_0"`` or ``"Q4_0"``), written once next to it
    (``<folder>/<stem>.<target>.gguf``) and reused after that.

    Norms and biases stay float32. The file is written under a temporary name and moved into place when
    complete, so an interrupted run leaves no half-written GGUF. Quality is always relative to ``source``:
    a re-quantized Q4_K_M file cannot be better than the Q4_K_M it came from.
    """
    import gguf
    from gguf.quants import dequantize, quantize

    if target not in REQUANT_TYPES:
        raise ValueError(f"target={target!r}: use one of {', '.join(REQUANT_TYPES)}.")
    source = Path(source)
    out_dir = Path(folder) if folder is not None else source.parent / "variants"
    out = out_dir / f"{source.stem}.{target}.gguf"
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    body, edges = (gguf.GGMLQuantizationType[t] for t in REQUANT_TYPES[target])
    reader = gguf.GGUFReader(source)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(tmp, str(reader.fields["general.architecture"].contents()))
    try:
        _copy_metadata(reader, writer, gguf, _FILE_TYPE[target])
        for t in reader.tensors:
            if len(t.shape) < 2:
                writer.add_tensor(t.name, dequantize(t.data, t.tensor_type).astype("float32"))
                continue
            qtype = edges if t.name in ("token_embd.weight", "output.weight") else body
            weights = dequantize(t.data, t.tensor_type).astype("float32")
            writer.add_tensor(t.name, quantize(weights, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _copy_metadata(reader: object, writer: object, gguf: object, file_type: int) -> None:
    """Every key of ``reader`` onto ``writer`` (the header keys excepted), with ``general.file_type`` set."""
    value_type = gguf.GGUFValueType  # type: ignore[attr-defined]
    for field in reader.fields.values():  # type: ignore[attr-defined]
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        if field.name == "general.file_type":
            writer.add_key_value(field.name, file_type, value_type.UINT32)  # type: ignore[attr-defined]
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == value_type.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)  # type: ignore[attr-defined]
