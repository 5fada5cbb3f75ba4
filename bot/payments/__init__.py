"""Telegram Stars: picture packs, the monthly subscription, pre-checkout, credit, refunds."""
