"""Money: /balance, /buy and Telegram Stars (packs, the monthly subscription,
pre-checkout, credit, refunds), and the admins' /grant, /subscribe, /refund, /stoprenewal.

    offers      PURE: the invoice payload that names what a buyer pays for
    rules       PURE: may a checkout go on; what a payment credits
    keyboards   the buy buttons (offered to other features through ``Deps.offers``)
    handlers    the payment handlers, /paysupport, /terms, /refund, /stoprenewal
    accounts    /balance, and the admins' /grant and /subscribe
"""
