"""Delivery: from due rows in the ledger to the endpoint and back.

The dispatcher claims rows and records results; the pacer holds the send rate; the retry
policy classifies answers; the sender and transport talk HTTP; auth holds the token.
"""
