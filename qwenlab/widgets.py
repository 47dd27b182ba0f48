"""ipywidgets panels: the sampling lab, the chat box, the two-pane thinking view.

Every panel is a thin view over library functions (``sampling``, ``generation``, ``chat``, ``thinking``);
callbacks are plain methods so tests can drive them headless by setting widget values.

Taught in ``04_generate.ipynb`` (SamplingLab), ``05_chat.ipynb`` (ChatBox), ``06_thinking.ipynb`` (ThinkingView).
"""

from __future__ import annotations

# ---- SamplingLab (04_generate) -------------------------------------------------------------------

# ---- ChatBox and ThinkingView (05_chat, 06_thinking) ---------------------------------------------
