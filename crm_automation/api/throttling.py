from rest_framework.throttling import SimpleRateThrottle


class PerToken(SimpleRateThrottle):
    """One budget per token (or session user); anonymous callers per address."""

    scope = "per_token"

    def get_cache_key(self, request, view):
        auth = getattr(request, "auth", None)
        if auth is not None and hasattr(auth, "key"):
            ident = f"token:{auth.key[:12]}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
