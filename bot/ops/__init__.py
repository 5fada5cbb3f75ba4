"""Operating the bot: ``python -m bot doctor``, ``stats`` and ``backup``, ``/stats``, retention.

``report`` and ``server_report`` are the pure picture report; ``stats`` its command line
and bot command; ``doctor`` checks a deployment one line at a time; ``backup`` copies the
database while the bot runs; ``retention`` prunes old rows every hour.
"""
