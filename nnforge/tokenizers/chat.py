"""Chat templates: render a conversation with its Jinja template the way transformers does.

Same environment as transformers' ``apply_chat_template``: a sandboxed Jinja environment with
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson`` filter that does not
escape HTML, and the globals ``raise_exception``, ``strftime_now``, ``namespace``; the template sees
``messages``, ``add_generation_prompt`` and the special tokens (``bos_token``, ``eos_token``, ...).
"""
from __future__ import annotations

import functools
import json
from datetime import datetime

__all__ = ["render_chat"]


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:
        raise ImportError("chat templates need the `jinja2` package: pip install nnforge[hf]") from e

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool = False,
                continue_final_message: bool = False, **context) -> str:
    """The string ``template`` renders for ``messages`` (``[{"role": ..., "content": ...}, ...]``).

    ``continue_final_message=True`` leaves the last message open (cut after its content) so a model
    continues it, as in transformers.
    """
    if not messages:
        raise ValueError("apply_chat_template: the conversation is empty; give at least one message")
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise TypeError(f"apply_chat_template: each message must be a dict with 'role' and 'content', got {m!r}")
    if continue_final_message and add_generation_prompt:
        raise ValueError("apply_chat_template: continue_final_message and add_generation_prompt are exclusive")
    messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
    rendered = _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **context)
    if continue_final_message:
        final = messages[-1].get("content")
        if not isinstance(final, str) or final.strip() not in rendered:
            raise ValueError("apply_chat_template: continue_final_message is set but the final message's content "
                             "does not appear in the rendered chat")
        cut = rendered.rindex(final.strip()) + len(final.strip())
        rendered = rendered[:cut]
    return rendered
