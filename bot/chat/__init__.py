"""The conversation: commands, persona replies (LLM or offline lines), the persona picker.

``handlers`` holds one async function per chat command; ``keyboards`` the buttons the
chat puts under its messages. The LLM client and the personas file are shared with the
pictures (``bot.core.llm``, ``bot.core.personas``).
"""
