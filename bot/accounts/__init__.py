"""What a user may spend: ``/balance``, and the admins' ``/grant`` and ``/subscribe``."""
