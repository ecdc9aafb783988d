"""Tollgate settings, read from the environment (see README "Configuration")."""

import os
import secrets
from pathlib import Path

import dj_database_url
from babel.numbers import list_currencies
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from portal.env import env, envbool, envchoice, envfloat, envint

BASE_DIR = Path(__file__).resolve().parent.parent

# `make run` writes .env on its first run (DJANGO_DEBUG=1 and a generated DJANGO_SECRET_KEY), so
# that manage.py and uvicorn need no variables; the real environment wins over it.
# DJANGO_ENV_FILE names another file, or none when set empty (the test suite reads none).
ENV_FILE = os.environ.get("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    load_dotenv(ENV_FILE, override=False)


def dev_secret_key() -> str:
    """A key made once per checkout and kept in .secret_key, so sessions survive restarts."""
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = envbool("DJANGO_DEBUG", False)

SECRET_KEY = env("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off: "
            "set DJANGO_SECRET_KEY to a long random string (or DJANGO_DEBUG=1 for development)."
        )
    SECRET_KEY = dev_secret_key()

ALLOWED_HOSTS = [h.strip() for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("DJANGO_CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "portal",
    "keys",
    "proxy",
    "activity",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "portal.middleware.StaffMFARequiredMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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

# --- Database -------------------------------------------------------------------------------

# Connections each process may hold on PostgreSQL: the pages' pool and the model API's pool each.
DATABASE_POOL_SIZE = envint("DATABASE_POOL_SIZE", 20)
# How long a request waits for a pooled connection when every one is busy, before its own 503.
# Measured with 1,000 streams opening at once on two workers (tests/ops/test_burst.py): the longest
# wait was 0.6-0.9 s on a quiet machine and 4.6 s on a loaded one; 5 s absorbed every run.
DATABASE_POOL_TIMEOUT = envfloat("DATABASE_POOL_TIMEOUT", 5.0)
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Tollgate understands: {exc}") from None

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE transactions take the write lock up front, so racing writers queue on
        # `timeout` instead of failing with "database is locked" on lock upgrade.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that uvicorn servers started by the tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # With the pool, Django's health checks test a connection as it leaves the pool, so none
    # that died in an outage is handed out afterwards.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["OPTIONS"] = {
        # Async views run their queries in short-lived threads; a pool keeps connections warm.
        "pool": {"min_size": 2, "max_size": DATABASE_POOL_SIZE, "timeout": DATABASE_POOL_TIMEOUT},
        "connect_timeout": 3,
        # Server-side binding lets psycopg prepare the hot statements (key lookup, admission)
        # once per connection instead of PostgreSQL planning them on every request.
        "server_side_binding": True,
    }
    # One test database per test run, so runs side by side do not collide.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}

DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000_000

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache --------------------------------------------------------------------------------

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    SILENCED_SYSTEM_CHECKS = []
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # One process, one memory: django-ratelimit's shared-cache checks do not apply.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- Accounts (django-allauth) -------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = envchoice(
    "ACCOUNT_EMAIL_VERIFICATION", "optional" if DEBUG else "mandatory", ("none", "optional", "mandatory")
)
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_USER_DISPLAY = lambda user: user.email  # noqa: E731 - people know their email, not a username

EMAIL_HOST = env("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = envint("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)  # a mail server that hangs must not hold a thread
    if EMAIL_TIMEOUT < 1:
        raise ImproperlyConfigured(f"EMAIL_TIMEOUT must be at least 1 (seconds), not {EMAIL_TIMEOUT}")
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Tollgate <noreply@localhost>")
# The address people reach the portal at: every link in an email starts with it, whatever Host
# the request that sent it had (portal/account_adapter.py).
SITE_URL = env("SITE_URL").rstrip("/")
if not SITE_URL:
    if EMAIL_HOST and not DEBUG:
        raise ImproperlyConfigured(
            "SITE_URL is not set. It is required when email goes out over SMTP (EMAIL_HOST) with "
            "DJANGO_DEBUG off: set it to the address people reach the portal at, e.g. https://tollgate.example.com."
        )
    SITE_URL = "http://127.0.0.1:8000"
_site_scheme, _, _site_host = SITE_URL.partition("://")
if _site_scheme not in ("http", "https") or not _site_host or any(c in _site_host for c in "/?#@ "):
    raise ImproperlyConfigured(f"SITE_URL must be like https://tollgate.example.com (no path), not {SITE_URL!r}")
ACCOUNT_ADAPTER = "portal.account_adapter.AccountAdapter"

# --- Two-factor sign-in and sessions (allauth's mfa and usersessions) -----------------------

# Passkeys need a secure context: HTTPS, or http://localhost (not 127.0.0.1) in development.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_TOTP_ISSUER = "Tollgate"
# Recovery codes are shown once, right after they are made; after that only regenerated.
MFA_RECOVERY_CODES_SHOW_ONCE = True
# Staff without a second factor are kept out of /admin/ and sent to enrol (portal/middleware.py).
STAFF_MFA_REQUIRED = envbool("STAFF_MFA_REQUIRED", not DEBUG)
# The sessions page lists each session from its sign-in (every sign-in goes through allauth, the
# admin's too). Tracking adds when and from where each was last used, at a database write per
# signed-in page request.
USERSESSIONS_TRACK_ACTIVITY = envbool("USERSESSIONS_TRACK_ACTIVITY", False)

# --- HTTPS and headers ----------------------------------------------------------------------

SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = envbool("DJANGO_SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if envbool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Static files ----------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Templates still render when collectstatic has not run (tests); `make` always runs it.
WHITENOISE_MANIFEST_STRICT = False
WHITENOISE_USE_FINDERS = DEBUG

# --- i18n ------------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- DRF ---------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The keys app's errors (KeyAlreadyExists, BackendUnavailable, ...) become the contract's answers here.
    "EXCEPTION_HANDLER": "keys.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tollgate API",
    "DESCRIPTION": "Self-serve API keys on usage plans.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Tollgate ------------------------------------------------------------------------------------

# `local`, `aws`, or the dotted path of a backend class (keys/backends/__init__.py), whose import
# `manage.py check` tries.
KEYS_BACKEND = env("KEYS_BACKEND", "local") or "local"
if KEYS_BACKEND not in ("local", "aws") and "." not in KEYS_BACKEND:
    raise ImproperlyConfigured(f"KEYS_BACKEND must be local, aws or a backend's dotted path, not {KEYS_BACKEND!r}")
AWS_DEFAULT_REGION = env("AWS_DEFAULT_REGION", "ap-southeast-1")
GATEWAY_URL = env("GATEWAY_URL").rstrip("/")
LLM_BASE_URL = env("LLM_BASE_URL").rstrip("/")
LLM_API_KEY = env("LLM_API_KEY")
LLM_MODEL = env("LLM_MODEL", "demo")
# The ISO 4217 code of model prices and money budgets (keys/money.py).
CURRENCY = env("CURRENCY", "USD").upper()
if CURRENCY not in list_currencies():
    raise ImproperlyConfigured(f"CURRENCY must be an ISO 4217 code such as USD or EUR, not {CURRENCY!r}")
LLM_CONNECT_TIMEOUT = envfloat("LLM_CONNECT_TIMEOUT", 5.0)
LLM_READ_TIMEOUT = envfloat("LLM_READ_TIMEOUT", 60.0)
# Seconds between the demo model's words, so streaming can be seen.
DEMO_MODEL_PAUSE = envfloat("DEMO_MODEL_PAUSE", 0.04)
# Key creation and rotation per user, django-ratelimit syntax.
KEY_CHURN_RATE = env("KEY_CHURN_RATE", "10/h")
# Seconds a client address waits for its answer once it has presented more than 10 bad keys in a
# minute (per worker): a flood then waits instead of taking the CPU valid keys need. 0: no pause.
AUTH_FAILURE_DELAY = envfloat("AUTH_FAILURE_DELAY", 1.0)
# Days the request log (/activity/, /api/requests) keeps its rows.
REQUEST_LOG_DAYS = envint("REQUEST_LOG_DAYS", 30)
if REQUEST_LOG_DAYS < 1:
    raise ImproperlyConfigured(f"REQUEST_LOG_DAYS must be at least 1, not {REQUEST_LOG_DAYS}")

# Prometheus scrapes /metrics with this bearer token; unset, /metrics answers 404.
METRICS_TOKEN = env("METRICS_TOKEN")

# One line per model API request (logger "tollgate.requests", proxy/meter.py), and everything
# else, as text or as one JSON object per line.
LOG_FORMAT = envchoice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "INFO" if DEBUG else "WARNING"},
    "loggers": {
        "tollgate": {"level": "INFO"},
        "uvicorn.error": {"level": "INFO"},  # start and stop, under `make serve` (portal/serve.py)
        # 4xx answers (403, 429) are the product working, not warnings.
        "django.request": {"level": "ERROR"},
    },
}
