"""Settings for crm-automation, read from environment variables (see README)."""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url
from csp import constants as csp
from dj_database_url import DBConfig
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off: a random string of 50 or more characters, the same on "
            "every host and kept secret. Generate one with: "
            "python -c \"import secrets; print(secrets.token_urlsafe(50))\"")
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"
# The development default answers on this machine only; in production the host names must be said.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS must be set when DEBUG is off: the host names this site is reached by, comma "
        "separated (e.g. ALLOWED_HOSTS=crm.example.com,www.crm.example.com).")

# --- Security (DEBUG off: README "Production") -------------------------------------------------
# Behind a proxy that terminates TLS (nginx, a load balancer), every request reaches Django as
# plain HTTP: BEHIND_TLS_PROXY=1 trusts the proxy's X-Forwarded-Proto instead. Only set it when
# the proxy always sets (or overwrites) that header, or a client could claim HTTPS; without it
# behind such a proxy, SECURE_SSL_REDIRECT would redirect for ever.
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# A load balancer probes the health endpoints over plain HTTP: they answer, not redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$"]
# HSTS: browsers refuse plain HTTP to this host (and its subdomains) for a year once they have
# seen the header over HTTPS. Try a short SECURE_HSTS_SECONDS (3600) first on a new domain.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Preloading asks browser makers to hard-code HTTPS for the whole domain, hard to undo: the
# operator's deliberate choice, so check --deploy's reminder (W021) is silenced while it is off.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# Origins (scheme + host) allowed to POST forms besides the site itself, e.g. when the proxy
# rewrites the Host header: https://crm.example.com
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The DEBUG error page and error emails: connection URLs (DATABASE_URL, REDIS_URL …) hidden by
# name, and any password in a URL or DSN masked wherever it appears (config/error_reports.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.error_reports.MaskingFilter"
DEFAULT_EXCEPTION_REPORTER = "config.error_reports.MaskingReporter"

# --- Content-Security-Policy (django-csp; README "Production") -----------------------------------
# Pages load scripts, styles, images and fonts from this site only and run no inline script or
# style attribute: the pages and the admin have none (static/web/*.js attach their handlers), and
# the one inline script and style of the API docs page (drf-spectacular's Swagger UI) carry the
# request's nonce (templates/drf_spectacular/swagger_ui.html). data: images are the SVG icons
# the admin and Swagger UI draw in their CSS. No page may be framed, no form posts elsewhere. The
# browsable API's pages alone allow inline styles (DRF's templates; config/content_security.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.NONCE],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF, "data:"],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    },
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens: hashed, expiring, revocable (api/tokens.py)
    "axes",  # login lockouts (api/login_guard.py)
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "crm_automation.workers",  # before django_q: its `qcluster` (a stop hands work back) is the one run
    "django_q",
    "django_fsm",
    "crm_automation.crm",
    "crm_automation.automation",
    "crm_automation.api",
    "crm_automation.webhooks",
    "crm_automation.web",
]

MIDDLEWARE = [
    # /healthz and /readyz for load balancers: before the host check and the HTTPS redirect.
    "crm_automation.web.views.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (below: CONTENT_SECURITY_POLICY)
    "config.content_security.BrowsableApiStyles",  # DRF's browsable API pages keep their inline styles
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files, before anything that reads a session
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "crm_automation.web.input_guard.RefuseNulMiddleware",  # a NUL in a query or form is a 400, not a 500
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # a locked-out sign-in (e.g. /admin/login/) gets the lockout page
    "crm_automation.crm.sources.SourceMiddleware",  # changes made by a request say where they came from
    "crm_automation.web.time_zone.OrganizationTimeZoneMiddleware",  # the admin shows the organization's times
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- Database ---------------------------------------------------------------------------------
def _database_from_env() -> DBConfig:
    url = env_str("DATABASE_URL", "")
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{VAR_DIR / 'crm.sqlite3'}"
    try:
        config = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL we understand: {exc}") from None
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        # A web server and several workers write at once: WAL lets readers run beside the
        # writer, IMMEDIATE takes the write lock at BEGIN (no lock-upgrade deadlocks) and the
        # timeout makes a writer wait for the lock instead of failing with "database is locked".
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": env_int("SQLITE_TIMEOUT", 30, minimum=1),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        config["CONN_MAX_AGE"] = 0 if config["NAME"] == ":memory:" else config["CONN_MAX_AGE"]
        # Tests use a file too, so a real qcluster process can share the test database.
        config["TEST"] = {"NAME": str(VAR_DIR / "test_crm.sqlite3")}
    elif engine != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"DATABASE_URL engine {engine} is not supported; use sqlite or postgres.")
    elif env_bool("DB_POOL", True):
        config.update(_pool_of(config))
    return config


def _pool_of(config: DBConfig) -> DBConfig:
    """PostgreSQL through psycopg's connection pool, one per process (README "Database
    connections"). A burst of requests (the dev server opens a thread per request) waits up to
    DB_POOL_TIMEOUT seconds for one of DB_POOL_MAX_SIZE connections instead of opening one each
    until PostgreSQL runs out; a worker returns its connection after every task. Django requires
    CONN_MAX_AGE 0 with a pool: a closed connection goes back to it. Forked processes (django-q2's
    workers) never use their parent's pool: config/db_pool.py drops it in the child."""
    minimum = env_int("DB_POOL_MIN_SIZE", 1, minimum=0)
    maximum = env_int("DB_POOL_MAX_SIZE", 10, minimum=1)
    if maximum < minimum:
        raise ImproperlyConfigured(f"DB_POOL_MAX_SIZE ({maximum}) must be at least DB_POOL_MIN_SIZE ({minimum}).")
    from config import db_pool

    db_pool.forget_pools_in_forked_children()
    # While the database is away a pool answers no one until DB_POOL_TIMEOUT is over (psycopg_pool
    # never fails a waiting request early), and it retries connecting with a growing delay: giving
    # up after 2 s lets the next request try again at once, so a restarted database serves the
    # first request after it is back instead of the pool's next retry, seconds or minutes later.
    pool = {"min_size": minimum, "max_size": maximum, "timeout": env_int("DB_POOL_TIMEOUT", 5, minimum=1),
            "reconnect_timeout": 2}
    # A connection the server dropped (a restart, a failover) is noticed when it is lent, not in a request.
    return {"CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": True, "OPTIONS": {**config.get("OPTIONS", {}), "pool": pool}}


DATABASES = {"default": _database_from_env()}
# The two databases the project runs on (_database_from_env refuses others).
ON_POSTGRESQL = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# PostgreSQL keeps the workers' hot looks prepared per connection (bulk_insert.prepared_cursor);
# 0 for a PgBouncer in transaction mode that cannot keep statements prepared.
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["config.formats"]  # times with their zone's abbreviation, as on the pages

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))  # collectstatic copies here
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # DEBUG off: collectstatic (serve_prod runs it) writes content-hashed names, a manifest and
    # compressed copies, and whitenoise serves them with far-future cache headers. DEBUG on (make
    # run, the tests): files straight from the app directories, no collectstatic needed.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
                    else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Decided here, not by whitenoise from settings.DEBUG when the middleware starts: the tests run
# with DEBUG switched off by pytest-django but have no STATIC_ROOT to scan.
WHITENOISE_AUTOREFRESH = DEBUG
WHITENOISE_USE_FINDERS = DEBUG

LOGIN_URL = "admin:login"

# --- Sign-in: lockouts and API tokens (README "The integration API"; api/login_guard.py) --------
# Every password sign-in (the API's token endpoint, the admin's login that the pages use) is
# counted by django-axes in the shared cache: after LOGIN_FAILURE_LIMIT failures for one
# username, or from one address, sign-ins for it are refused for LOGIN_LOCKOUT_MINUTES (429: a
# JSON error on the API, a page on the admin), the right password included. Attempts during a
# lockout do not prolong it. `manage.py axes_reset_username <name>` / `axes_reset_ip <address>`
# lift one early.
AUTHENTICATION_BACKENDS = [
    "crm_automation.api.login_guard.LockoutBackend",  # axes' check, before any password is looked at
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"  # the counts live in CACHES["default"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # a guesser of one account; an address trying many
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "crm_automation.api.client_address.client_address"  # as the throttles see it
AXES_LOCKOUT_CALLABLE = "crm_automation.api.login_guard.lockout_response"
AXES_ENABLE_ADMIN = False  # its admin pages list database records; the cache handler keeps none
AXES_VERBOSE = False  # no banner on every start; failures and lockouts are still logged
# API tokens (django-rest-knox): a new one at each sign-in, stored as a digest, ending after
# API_TOKEN_TTL_HOURS, on revocation, on a password change or when a membership is removed.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env_int("API_TOKEN_TTL_HOURS", 10, minimum=1)),
    "AUTH_HEADER_PREFIX": "Token",  # clients keep sending `Authorization: Token <key>`
}
# A sign-in beyond this many live tokens ends the person's oldest one.
API_TOKENS_PER_USER = env_int("API_TOKENS_PER_USER", 20, minimum=1)

# --- Email ------------------------------------------------------------------------------------
# Any Django email backend plugs in here (SMTP, django-anymail providers, ...). The default writes
# each message to a file a developer can read.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "sent-emails"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "automation@crm.localhost")

# --- django-q2 --------------------------------------------------------------------------------
Q_TIMEOUT = env_int("Q_TIMEOUT", 120, minimum=10)
# A stalled SMTP server must not hold a worker until the task timeout: every socket operation
# of the SMTP backend gives up after this many seconds.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", min(10, Q_TIMEOUT // 4), minimum=1)
# The outbox sends each message's envelope in one write when the server offers PIPELINING
# (crm/smtp_pipelining.py): two round trips a message instead of four.
EMAIL_PIPELINING = env_bool("EMAIL_PIPELINING", True)
# A worker waits for PostgreSQL about half of the time it drains (benchmarks/README.md, "Workers,
# batches and where a run's cost has its floor"): two per core keep the cores busy. SQLite takes
# one writer at a time: more would wait.
DEFAULT_WORKERS = max(2, min(8, 2 * (os.cpu_count() or 1))) if ON_POSTGRESQL else 2
Q_CLUSTER: dict[str, Any] = {  # django-q2's settings (its keys and values are its own)
    "name": env_str("Q_CLUSTER_NAME", "crm-automation"),
    "workers": env_int("Q_WORKERS", DEFAULT_WORKERS, minimum=1),
    "timeout": Q_TIMEOUT,
    # The ORM broker hands a task out again after `retry` seconds, so it must exceed `timeout`
    # or a slow task would run twice at once.
    "retry": Q_TIMEOUT + 60,
    "max_attempts": 5,
    "catch_up": False,
    "poll": 0.05,
    "bulk": 4,
    "save_limit": 500,
    "ack_failures": False,
    "label": "Django Q2",
}
REDIS_URL = env_str("REDIS_URL", "")


def _with_socket_timeouts(url: str) -> str:
    """A Redis server that accepts connections but never answers must not hang a request, a
    worker or a process exit: give every connection and command a timeout unless the URL sets
    its own. (The broker's blocking pop waits 1 s, well under the command timeout.)"""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_connect_timeout", str(env_int("REDIS_CONNECT_TIMEOUT", 2, minimum=1)))
    query.setdefault("socket_timeout", str(env_int("REDIS_TIMEOUT", 5, minimum=2)))
    return urlunsplit(parts._replace(query=urlencode(query)))


LISTENING_BROKER = "crm_automation.workers.pg_broker.ListeningORM"
if REDIS_URL:
    Q_CLUSTER["redis"] = _with_socket_timeouts(REDIS_URL)
else:
    Q_CLUSTER["orm"] = "default"
    if ON_POSTGRESQL and env_bool("Q_LISTEN", True):
        # The ORM broker woken by LISTEN/NOTIFY instead of polling every `poll` (workers/pg_broker.py).
        Q_CLUSTER["broker_class"] = LISTENING_BROKER

# --- Cache: API throttles and login lockouts, shared by every process -------------------------
# Redis when REDIS_URL is set; else a table in the database (made by the api app's migration
# 0001, whatever this setting says at migrate time). Never a per-process memory cache: two web
# workers would each grant the whole rate.
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": _with_socket_timeouts(REDIS_URL), "KEY_PREFIX": "crm"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache",
                          # Expired entries go first; the cap only matters under a flood of addresses.
                          "OPTIONS": {"MAX_ENTRIES": 100_000, "CULL_FREQUENCY": 10}}}

# --- Automation engine ------------------------------------------------------------------------
class AlertSettings(TypedDict):
    WINDOW_SECONDS: int
    MIN_RUNS: int
    WARNING_SUCCESS_RATE: float
    CRITICAL_SUCCESS_RATE: float
    SLOW_FACTOR: float
    BACKLOG: int
    SLOW_RUN_SECONDS: int
    VOLUME_FACTOR: float
    VOLUME_MIN_DAYS: int
    VOLUME_MIN_RUNS: int
    ERROR_WINDOW_SECONDS: int
    ERROR_RATE: float
    ERROR_MIN_RUNS: int


class AutomationSettings(TypedDict, total=False):
    """AUTOMATION's keys and their types, for the type checker (every key is set below)."""

    NUDGE: bool
    EVENTS_NOTIFY: bool
    EVENT_BATCH_SIZE: int
    LEASE_SECONDS: int
    WATCHDOG_SECONDS: int
    MAX_CHAIN_DEPTH: int
    DRAIN_TIME_BUDGET: int
    RUN_TIME_BUDGET: int
    BREAKER_FAILURE_RATE: float
    BREAKER_WINDOW_SECONDS: int
    BREAKER_MIN_RUNS: int
    ALERTS: AlertSettings
    BREAKER_COOLDOWN_SECONDS: int
    GROUP_SLICE_SECONDS: int
    STEP_ASIDE_SECONDS: int
    REGRESSION_RUNS: int


AUTOMATION: AutomationSettings = {
    # Send a coalesced "events are waiting" task to the workers after commit. Off in tests,
    # which call the worker steps directly.
    "NUDGE": env_bool("AUTOMATION_NUDGE", True),
    # With the listening ORM broker, the outbox's own commit wakes the clusters (a trigger's NOTIFY,
    # workers/pg_broker.py): the save path then sends no nudge.
    "EVENTS_NOTIFY": Q_CLUSTER.get("broker_class") == LISTENING_BROKER,
    "EVENT_BATCH_SIZE": env_int("AUTOMATION_EVENT_BATCH", 200, minimum=1),
    # A run (or claimed event batch) whose worker vanished is free again after this; a live
    # worker renews its leases every third of it (a heartbeat), so long runs keep theirs.
    "LEASE_SECONDS": env_int("AUTOMATION_LEASE_SECONDS", 15, minimum=6),
    # Each worker process looks for abandoned runs and un-nudged events this often.
    "WATCHDOG_SECONDS": env_int("AUTOMATION_WATCHDOG_SECONDS", 5, minimum=1),
    "MAX_CHAIN_DEPTH": env_int("AUTOMATION_MAX_CHAIN_DEPTH", 3, minimum=0),
    # A task stops starting new work after this and hands the rest to a new task, so it always
    # ends well before Q_TIMEOUT kills it (even with a slow email provider).
    "DRAIN_TIME_BUDGET": env_int("AUTOMATION_DRAIN_SECONDS", max(1, min(30, Q_TIMEOUT // 4)), minimum=1),
    # The regression check at publish replays this many of a workflow's latest runs (at most 200:
    # automation/services/regression.py).
    "REGRESSION_RUNS": min(env_int("AUTOMATION_REGRESSION_RUNS", 50, minimum=1), 200),
}
AUTOMATION["RUN_TIME_BUDGET"] = AUTOMATION["DRAIN_TIME_BUDGET"]
# The circuit breaker (automation/breaker.py): a workflow whose runs fail more than this share
# over the window (with at least BREAKER_MIN_RUNS finished) is paused and tried again after the
# cool-down.
AUTOMATION["BREAKER_FAILURE_RATE"] = env_float("AUTOMATION_BREAKER_FAILURE_RATE", 0.2)
AUTOMATION["BREAKER_WINDOW_SECONDS"] = env_int("AUTOMATION_BREAKER_WINDOW_SECONDS", 300, minimum=60)
AUTOMATION["BREAKER_MIN_RUNS"] = env_int("AUTOMATION_BREAKER_MIN_RUNS", 10, minimum=1)
# Alerts (automation/ops/alerts.py): the thresholds of docs/product.md#kpis-and-alerts.
AUTOMATION["ALERTS"] = {
    "WINDOW_SECONDS": env_int("AUTOMATION_ALERT_WINDOW_SECONDS", 3600, minimum=300),
    "MIN_RUNS": env_int("AUTOMATION_ALERT_MIN_RUNS", 20, minimum=1),
    "WARNING_SUCCESS_RATE": env_float("AUTOMATION_ALERT_WARNING_SUCCESS_RATE", 0.95),
    "CRITICAL_SUCCESS_RATE": env_float("AUTOMATION_ALERT_CRITICAL_SUCCESS_RATE", 0.80),
    "SLOW_FACTOR": env_float("AUTOMATION_ALERT_SLOW_FACTOR", 2.0, low=1.0, high=100.0),
    "BACKLOG": env_int("AUTOMATION_ALERT_BACKLOG", 1000, minimum=1),
    # automation/ops/run_alerts.py: a run at work longer than this (critical);
    "SLOW_RUN_SECONDS": env_int("AUTOMATION_ALERT_SLOW_RUN_SECONDS", 30, minimum=1),
    # today's runs above this × the median of the previous 14 days' daily counts (warning), for
    # workflows that ran on at least VOLUME_MIN_DAYS of those days, once today's reach VOLUME_MIN_RUNS;
    "VOLUME_FACTOR": env_float("AUTOMATION_ALERT_VOLUME_FACTOR", 1.5, low=1.0, high=100.0),
    "VOLUME_MIN_DAYS": env_int("AUTOMATION_ALERT_VOLUME_MIN_DAYS", 7, minimum=1),
    "VOLUME_MIN_RUNS": env_int("AUTOMATION_ALERT_VOLUME_MIN_RUNS", 20, minimum=1),
    # more than ERROR_RATE of the runs started in the last ERROR_WINDOW_SECONDS failed, of at
    # least ERROR_MIN_RUNS finished (critical).
    "ERROR_WINDOW_SECONDS": env_int("AUTOMATION_ALERT_ERROR_WINDOW_SECONDS", 600, minimum=60),
    "ERROR_RATE": env_float("AUTOMATION_ALERT_ERROR_RATE", 0.5, low=0.0, high=1.0),
    "ERROR_MIN_RUNS": env_int("AUTOMATION_ALERT_ERROR_MIN_RUNS", 10, minimum=1),
}
# The address links in emails start with (alerts, notifications).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Web pages (scheme://host[:port], or host:* for any port) whose scripts may call the MCP server at
# /mcp besides the site itself (api/mcp_server/http.py); a browser's request from any other Origin
# is refused (DNS rebinding protection). Desktop and server clients send no Origin.
MCP_ALLOWED_ORIGINS = env_list("MCP_ALLOWED_ORIGINS", [])
AUTOMATION["BREAKER_COOLDOWN_SECONDS"] = env_int("AUTOMATION_BREAKER_COOLDOWN_SECONDS", 900, minimum=60)
# An organization's runs deliver for this long at a time; when other organizations' work waits
# they then hand the rest to another task (automation/fairness.py): a slow provider or a stalling
# recipient of one organization delays the others by seconds, not by the whole budget.
AUTOMATION["GROUP_SLICE_SECONDS"] = env_int("AUTOMATION_GROUP_SLICE_SECONDS", 3, minimum=1)
# Runs whose organization already has a message in a provider's hands on another worker step
# aside this long when other organizations' work waits (fairness.py); the watchdog resumes them.
AUTOMATION["STEP_ASIDE_SECONDS"] = env_int("AUTOMATION_STEP_ASIDE_SECONDS", 2, minimum=1)
# The last email a task starts may take a connect and a send, each up to EMAIL_TIMEOUT.
if AUTOMATION["DRAIN_TIME_BUDGET"] + 2 * EMAIL_TIMEOUT >= Q_TIMEOUT:
    raise ImproperlyConfigured(
        f"AUTOMATION_DRAIN_SECONDS ({AUTOMATION['DRAIN_TIME_BUDGET']}) plus twice EMAIL_TIMEOUT ({EMAIL_TIMEOUT}) "
        f"must be shorter than Q_TIMEOUT ({Q_TIMEOUT}): a task must finish its last email before it is killed.")

# --- AI nodes (automation/ai/providers.py): agent and router nodes, AI authoring ---------------
# Without AI_PROVIDER and AI_MODEL, workflows with AI nodes are kept as drafts (publishing says
# which variables to set).
class AiSettings(TypedDict):
    PROVIDER: str
    MODEL: str
    API_KEY: str
    BASE_URL: str
    TIMEOUT_SECONDS: int
    PRICE_INPUT: float
    PRICE_OUTPUT: float


AI: AiSettings = {
    "PROVIDER": env_str("AI_PROVIDER", ""),  # openai (or any OpenAI-compatible endpoint) | anthropic
    "MODEL": env_str("AI_MODEL", ""),
    "API_KEY": env_str("AI_API_KEY", ""),
    "BASE_URL": env_str("AI_BASE_URL", ""),  # e.g. http://127.0.0.1:11434/v1 for a local Ollama
    "TIMEOUT_SECONDS": env_int("AI_TIMEOUT_SECONDS", 30, minimum=1),
    "PRICE_INPUT": env_float("AI_PRICE_INPUT_PER_MILLION", 0.0, low=0.0, high=1000.0),  # US$ per 1M tokens
    "PRICE_OUTPUT": env_float("AI_PRICE_OUTPUT_PER_MILLION", 0.0, low=0.0, high=1000.0),
}
if AUTOMATION["DRAIN_TIME_BUDGET"] + AI["TIMEOUT_SECONDS"] >= Q_TIMEOUT:
    raise ImproperlyConfigured(
        f"AUTOMATION_DRAIN_SECONDS ({AUTOMATION['DRAIN_TIME_BUDGET']}) plus AI_TIMEOUT_SECONDS "
        f"({AI['TIMEOUT_SECONDS']}) must be shorter than Q_TIMEOUT ({Q_TIMEOUT}): a task must finish its last AI "
        "call before it is killed.")

# --- Webhooks (crm_automation/webhooks, docs/webhooks.md) ---------------------------------------
# Outbound requests (http/request nodes) reach only public addresses: loopback, private,
# link-local (cloud metadata), multicast and other special addresses are refused. Hosts listed here
# (comma-separated names or IP addresses, no scheme or port) may be called whatever they resolve
# to, e.g. a receiver on the company network. The check and the connection use the same address.
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", [])
# Seconds one outbound request may take in all (connect, send, answer); a slower one fails.
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 15, minimum=1)
# Inbound: the largest body an endpoint accepts (bytes); larger ones get 413.
WEBHOOK_MAX_BODY = env_int("WEBHOOK_MAX_BODY", 256 * 1024, minimum=1024)
# Business events from other systems (crm/business_events.py): the largest `data` an event may carry
# (bytes, as JSON), and the country a phone number without a country code is read in (ISO code).
EVENT_MAX_DATA = env_int("EVENT_MAX_DATA", 32 * 1024, minimum=1024)
PHONE_REGION = os.environ.get("PHONE_REGION", "US").strip().upper() or "US"
# Receipts of inbound messages (replay protection and the admin's list) are deleted after these
# many days by a daily django-q2 schedule; a replay older than 5 minutes fails its timestamp check.
WEBHOOK_RECEIPT_DAYS = env_int("WEBHOOK_RECEIPT_DAYS", 30, minimum=1)
# Webhook signing secrets are stored encrypted with these Fernet keys (comma-separated, newest
# first; crm_automation/webhooks/fields.py). Unset: a key derived from SECRET_KEY. Set it in
# production so that changing SECRET_KEY does not make the stored secrets unreadable.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])

# --- Retention (crm_automation/automation/retention.py) ------------------------------------------
# Days of run history each plan keeps; older finished runs, decisions and events are deleted by a
# daily schedule (Free keeps no history anyway).
RUN_HISTORY_DAYS = {
    "free": 30,
    "pro": env_int("RUN_HISTORY_DAYS_PRO", 90, minimum=1),
    "enterprise": env_int("RUN_HISTORY_DAYS_ENTERPRISE", 365, minimum=1),
}

# --- Metrics (crm_automation/automation/metrics.py) ----------------------------------------------
# GET /metrics for Prometheus, with `Authorization: Bearer <METRICS_TOKEN>`; unset: no endpoint.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "crm_automation.api.token_auth.TokenAuthentication",  # knox's: `Authorization: Token <key>`
        "crm_automation.api.session_auth.SessionAuthentication",  # CSRF checked without parsing the body
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "crm_automation.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "crm_automation.api.pagination.Pages",
    "DEFAULT_PARSER_CLASSES": [  # bounded JSON: a huge or absurdly nested body is a 400
        "crm_automation.api.document_formats.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["crm_automation.api.throttling.PerPerson"],
    # Per person (session and tokens share one budget), anonymous callers per address; inbound
    # webhooks per sender address. Integrations that loop get a 429 with Retry-After.
    "DEFAULT_THROTTLE_RATES": {"per_person": env_str("API_THROTTLE_RATE", "1200/min"),
                               "webhook": env_str("WEBHOOK_THROTTLE_RATE", "1200/min")},
    # Proxies in front of the site that append to X-Forwarded-For. 0: the socket address is the
    # client and the header (which a client can write) is ignored. Throttles and login lockouts
    # read the address the same way (api/client_address.py).
    "NUM_PROXIES": env_int("TRUSTED_PROXY_COUNT", 0, minimum=0),
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "crm-automation API",
    "DESCRIPTION": "Workflows, runs, approvals and the CRM records they act on. Authenticate with "
                   "`Authorization: Token <key>` (POST /api/v1/auth/token/); pick an organization with "
                   "`X-Organization: <slug>` when you belong to several.\n\n"
                   "**Limits on bodies** (checked while parsing; a refusal is a 400 that names the limit): a "
                   "workflow document (JSON or YAML) at most 200,000 bytes, 24 levels of nesting and 20,000 values; "
                   "any other body at most 1,000,000 bytes, 64 levels and 100,000 values. YAML anchors and aliases "
                   "are refused, only JSON's types are accepted, numbers must be finite, and text may not contain "
                   "NUL characters or lone surrogates. Your role is checked before a body is read.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from this site: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No call to the online validator (swagger.io) from the docs page: nothing leaves this site.
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None, "deepLinking": True},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for the run status wherever it appears (list and detail shapes share it).
    "ENUM_NAME_OVERRIDES": {"RunStatusEnum": "crm_automation.automation.models.RunStatus",
                            "WorkflowStatusEnum": "crm_automation.automation.models.WorkflowStatus"},
}

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message and the line's fields:
# run_id, workflow_id, organization_id, status, duration_ms … for the engine's run lines), for a
# log shipper; the default is plain text. Runs and failures are logged by the
# "crm_automation.runs" logger (automation/run_log.py): ids, status, duration and the kind of
# failure, never email bodies, template output or secrets.
LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                 "json_ensure_ascii": False},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # django-q2 logs every enqueued task at INFO; the nudger enqueues often.
    # Django's own "django" logger has a console handler of its own; without propagate=False
    # every request warning would be printed twice (once by it, once by the root).
    # httpx logs every request at INFO (webhook and AI calls): their outcome is on the step.
    # The MCP SDK logs each request's session start and end at INFO (crm_automation.mcp logs the call).
    "loggers": {"django-q": {"level": env_str("Q_LOG_LEVEL", "WARNING")}, "httpx": {"level": "WARNING"},
                "mcp": {"level": "WARNING"},
                "django": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO"), "propagate": False}},
}

# --- Health (/healthz, /readyz, manage.py automation_status; docs/operations.md) ---------------
# /readyz answers 503 when the outbox holds more unprocessed changes than READY_MAX_BACKLOG, or
# its oldest is older than READY_MAX_EVENT_AGE_SECONDS: the workers are not keeping up (or none
# runs). 0 turns that check off (e.g. for a load balancer in front of web servers only).
HEALTH = {
    "MAX_BACKLOG": env_int("READY_MAX_BACKLOG", 10_000, minimum=0),
    "MAX_EVENT_AGE_SECONDS": env_int("READY_MAX_EVENT_AGE_SECONDS", 300, minimum=0),
    # Workers touch their heartbeat row this often; one unseen for 3 beats is gone.
    "HEARTBEAT_SECONDS": env_int("AUTOMATION_HEARTBEAT_SECONDS", 30, minimum=1),
}

# --- SMS (crm_automation/crm/sms) ------------------------------------------------------------------
# Twilio's REST API (tests point it at a local stand-in); status callbacks and replies come back to
# SITE_URL. The test provider ("fake", the demo's) sends nothing and answers at once.
TWILIO_API_BASE = env_str("TWILIO_API_BASE", "https://api.twilio.com").rstrip("/")
SMS_TIMEOUT = env_int("SMS_TIMEOUT", 15, minimum=1)
# Slack's Web API, for channels posted to with a bot token (tests point it at a local stand-in).
SLACK_API_BASE = env_str("SLACK_API_BASE", "https://slack.com").rstrip("/")
# A workflow with a response node answers the inbound webhook's caller: how long the request waits
# for the reply (then 202 with the run's id; the reply stays on the run).
WEBHOOK_RESPONSE_SECONDS = env_float("WEBHOOK_RESPONSE_SECONDS", 10.0, low=0.0, high=30.0)
