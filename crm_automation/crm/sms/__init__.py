"""SMS: segments, providers (a test one and Twilio), the outbox's delivery, and what providers
send back (status callbacks, replies, STOP/START)."""
