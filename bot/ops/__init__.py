"""Operating the bot: ``python -m bot doctor``, ``python -m bot stats`` and ``/stats``.

``report`` is the pure picture report; ``stats`` its command line and bot command;
``doctor`` checks a deployment one line at a time.
"""
