"""Signed webhooks: inbound endpoints (a trigger) and outbound requests (the http/request node).

Both sides speak Standard Webhooks (https://www.standardwebhooks.com/): headers `webhook-id`,
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
"""
