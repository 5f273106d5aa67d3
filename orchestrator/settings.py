"""Django settings for the active-learning orchestrator.

Every setting comes from the environment, with an embedded default that needs no server.
The README lists each variable; keep that table and this module in step.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


DATA_DIR = Path(env_str("ALO_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)



def _data_dir_secret_key(folder: Path) -> str:
    """A random key made once for this data folder (mode 0600): `make run` needs no setting, and
    no deployment runs on a key written in the source. Processes sharing a folder share it."""
    path = folder / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process made it this instant: its key, once written
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty: delete it, or set DJANGO_SECRET_KEY")
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_str("DJANGO_SECRET_KEY", "") or _data_dir_secret_key(DATA_DIR)
# MLflow's usage telemetry (on by default since 3.x) calls a host on the internet from every
# process that logs a model; off unless the operator opts in.
if not env_bool("ALO_MLFLOW_TELEMETRY", False):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in env_str("DJANGO_ALLOWED_HOSTS", "*").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_celery_beat",
    "orchestrator.learning",
    "orchestrator.mlbackend",
    "orchestrator.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The admin's stylesheets and scripts, served by the app itself under gunicorn as under
    # runserver (Django serves none with DEBUG off); straight from the apps' static folders.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "orchestrator.mlbackend.access_log.ProtocolAccessLog",
]

ROOT_URLCONF = "orchestrator.urls"
WSGI_APPLICATION = "orchestrator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'orchestrator.sqlite3'}"),
        conn_max_age=600,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file: wait for the writer instead of failing.
    # WAL with synchronous=NORMAL: commits do not fsync (the WAL is synced at checkpoints),
    # safe against corruption; a power cut may lose the last commits, never an older state.
    # IMMEDIATE: a transaction that reads before it writes (count versions, then insert one)
    # must hold the write lock from BEGIN. Under the default DEFERRED mode, another process
    # committing in between makes the write fail at once with "database is locked" (a stale
    # WAL snapshot cannot wait), whatever the timeout.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({
        "timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "transaction_mode": "IMMEDIATE",
    })

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise looks there too (collectstatic, if ever run, fills it)
# No collectstatic step: whitenoise finds the files where the apps ship them.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Console: the admin's first account (manage.py bootstrap_admin; manage.py serve runs it) --
# Set both to have an account created at start when it does not exist; an existing account's
# password is never changed. Unset: `make admin` (createsuperuser) asks for one.
ALO_ADMIN_USER = env_str("ALO_ADMIN_USER", "")
ALO_ADMIN_PASSWORD = env_str("ALO_ADMIN_PASSWORD", "")
ALO_ADMIN_EMAIL = env_str("ALO_ADMIN_EMAIL", "")
# The address Label Studio reaches this service at (the console's "Connect a Label Studio project"
# offers it; the console's own address when unset).
ALO_SERVICE_URL = env_str("ALO_SERVICE_URL", "")
# Where an MLflow UI for MLFLOW_TRACKING_URI runs (e.g. http://127.0.0.1:5000): the console
# links each version to its run there. Blank: the run id is shown without a link.
MLFLOW_UI_URL = env_str("MLFLOW_UI_URL", "").rstrip("/")

# The management API (/api/): staff accounts with the admin's permissions (reading needs the model's
# view permission, every act "Can change project": orchestrator/learning/access.py); a token (`Authorization: Token <key>`, from
# `manage.py drf_create_token <user>` or the admin's Tokens page), the admin's session, or basic auth.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["orchestrator.console.permissions.ConsolePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "orchestrator.console.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "orchestrator.console.pagination.Pages",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Active-learning orchestrator: management API",
    "DESCRIPTION": "Projects, model versions, training and scoring runs, strategies and schedules: what the "
                   "admin console does, for scripts. Staff accounts, with the admin's permissions: a view "
                   "permission to read, \"Can change project\" to act (a 403 names what is missing).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Label Studio -------------------------------------------------------------------------
# The only Label Studio the service ever calls. /setup's `hostname` and `access_token`
# are recorded but never used to make a call (that would let anyone aim us at any host).
LABEL_STUDIO_URL = env_str("LABEL_STUDIO_URL", "").rstrip("/")
LABEL_STUDIO_API_KEY = env_str("LABEL_STUDIO_API_KEY", "")
LABEL_STUDIO_TIMEOUT = float(env_str("LABEL_STUDIO_TIMEOUT", "30"))
# A prediction import into a large project legitimately takes long (Label Studio without Redis
# recomputes every task's counters on each import: 30 s and more at 100k tasks); only a
# Label Studio that stopped answering should time out.
LABEL_STUDIO_IMPORT_TIMEOUT = float(env_str("LABEL_STUDIO_IMPORT_TIMEOUT", "300"))
# Whole reads (a project's annotations) are retried on transport errors and 5xx.
LABEL_STUDIO_RETRIES = env_int("LABEL_STUDIO_RETRIES", 4)
LABEL_STUDIO_RETRY_BACKOFF = float(env_str("LABEL_STUDIO_RETRY_BACKOFF", "2"))
LABEL_STUDIO_PAGE_SIZE = env_int("LABEL_STUDIO_PAGE_SIZE", 500)
# Texts behind URLs read from Label Studio at once per /predict or scoring batch (bench/url_texts.py:
# a local Label Studio serves fastest 2 at a time, a remote one gains from more).
URL_FETCH_THREADS = env_int("ALO_URL_FETCH_THREADS", 8)
if not 1 <= URL_FETCH_THREADS <= 64:
    raise RuntimeError(f"ALO_URL_FETCH_THREADS must be 1 to 64, not {URL_FETCH_THREADS}")

# --- ML backend protocol ------------------------------------------------------------------
BASIC_AUTH_USER = env_str("BASIC_AUTH_USER", "")
BASIC_AUTH_PASS = env_str("BASIC_AUTH_PASS", "")
# Webhooks: Label Studio sends them without basic auth. With a secret the service keeps its own
# webhook in each connected project (at ALO_SERVICE_URL/webhook) carrying the secret in a header,
# and /webhook refuses calls with neither that header nor the basic-auth credentials (Label
# Studio's Start Training carries those). ALO_WEBHOOK_ACCEPT_UNSIGNED keeps accepting the rest.
ALO_WEBHOOK_SECRET = env_str("ALO_WEBHOOK_SECRET", "")
ALO_WEBHOOK_ACCEPT_UNSIGNED = env_bool("ALO_WEBHOOK_ACCEPT_UNSIGNED", False)
# The largest /webhook body read (Label Studio's are kilobytes; a bulk import's a few MB).
ALO_WEBHOOK_MAX_BYTES = env_int("ALO_WEBHOOK_MAX_BYTES", 8 * 1024 * 1024)
# Processed events older than this many days are deleted by beat (0: kept forever).
ALO_EVENT_RETENTION_DAYS = env_int("ALO_EVENT_RETENTION_DAYS", 30)
MODEL_CLASS_NAME = env_str("ALO_MODEL_CLASS", "ActiveLearningOrchestrator")
# The query strategy and the features a project gets when Label Studio first calls /setup for it
# (bench/learning_curves.py: margin over TF-IDF + word vectors needs the fewest labels measured).
DEFAULT_STRATEGY = env_str("ALO_DEFAULT_STRATEGY", "margin")
DEFAULT_FEATURES = env_str("ALO_DEFAULT_FEATURES", "tfidf+glove")
# The share of queue positions given to the audit sample (tasks drawn uniformly, held out of training,
# labelled like any task) that the unbiased quality estimate rests on (learning/audit.py). 0: no audit.
AUDIT_SHARE = float(env_str("ALO_AUDIT_SHARE", "0.1"))
# How many tasks /predict accepts in one request (Label Studio sends all selected tasks at once).
PREDICT_MAX_TASKS = env_int("ALO_PREDICT_MAX_TASKS", 100_000)
# How often a web process re-reads which version serves (a promotion shows within this).
ALO_SERVING_REFRESH_SECONDS = float(env_str("ALO_SERVING_REFRESH_SECONDS", "2"))
# A webhook ack slower than this inside the service is logged with its parts.
ALO_SLOW_ACK_MS = float(env_str("ALO_SLOW_ACK_MS", "200"))
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("ALO_MAX_REQUEST_BYTES", 256 * 1024 * 1024)

# --- MLflow -------------------------------------------------------------------------------
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI", f"sqlite:///{DATA_DIR / 'mlflow.db'}")
MLFLOW_ARTIFACT_ROOT = env_str("MLFLOW_ARTIFACT_ROOT", str(DATA_DIR / "mlartifacts"))
MLFLOW_EXPERIMENT_PREFIX = env_str("MLFLOW_EXPERIMENT_PREFIX", "label-studio-project-")

# --- Celery -------------------------------------------------------------------------------
# With no broker configured, Celery uses kombu's filesystem transport under the data
# folder: a real worker process picks jobs up, requests never run them inline.
_broker_dir = DATA_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND",
    f"file://{DATA_DIR / 'celery-results'}" if CELERY_BROKER_URL == "filesystem://" else CELERY_BROKER_URL,
)
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # The exchange tables; kombu's default is ./control under the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL == "filesystem://"
    # Redis: a message a killed worker held is handed out again after this many seconds.
    else {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
)
if CELERY_BROKER_URL == "filesystem://":
    for _folder in (_broker_dir / "queue", _broker_dir / "processed", _broker_dir / "control"):
        _folder.mkdir(parents=True, exist_ok=True)
    # The folders above are the broker; the host is kombu's own default, named so that every
    # process does not warn at start that none was given.
    CELERY_BROKER_URL = "filesystem://localhost//"
if CELERY_RESULT_BACKEND.startswith("file://"):
    Path(CELERY_RESULT_BACKEND.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_IGNORE_RESULT = True
# Three queues, each consumed by worker processes of its own (manage.py serve starts one worker per
# queue; docker-compose.yml one service per queue): a long push or clean-up never holds up a
# training, nor the reverse. Training (and reading annotations) is the default queue; the training
# worker also takes "celery", where an earlier release sent everything.
ALO_QUEUES = ("training", "scoring", "housekeeping")
CELERY_TASK_DEFAULT_QUEUE = "training"
CELERY_TASK_ROUTES = {
    **{f"orchestrator.learning.tasks.{name}": {"queue": "scoring"}
       for name in ("run_scoring", "score_project", "rescore_project", "reconcile_scoring")},
    **{f"orchestrator.learning.tasks.{name}": {"queue": "housekeeping"}
       for name in ("clean_up_predictions", "resume_cleanups", "ensure_webhook", "ensure_webhooks", "prune_events")},
}

# Old predictions deleted at once by a clean-up (1-16): fewer is gentler on a Label Studio whose
# annotators save meanwhile (on SQLite every delete and save takes the one write lock).
ALO_CLEANUP_THREADS = min(16, max(1, env_int("ALO_CLEANUP_THREADS", 4)))

# A push reads its tasks from the service's task mirror; each push first asks Label Studio only
# for what changed (tasks created, deleted). Task data edited in place after import (no webhook
# says so) is read again when the mirror is read whole: this often (hours; 0 = only on demand).
ALO_TASK_MIRROR_FULL_HOURS = float(env_str("ALO_TASK_MIRROR_FULL_HOURS", "24"))

# --- Training loop ------------------------------------------------------------------------
# A training holds a per-project lease, renewed while it runs; a killed worker's lease
# lapses after this long and another worker takes over.
ALO_TRAINING_LEASE_SECONDS = float(env_str("ALO_TRAINING_LEASE_SECONDS", "60"))
# How often beat re-checks every project (events a lost message left pending, annotations
# whose webhook never arrived).
ALO_RECONCILE_SECONDS = float(env_str("ALO_RECONCILE_SECONDS", "60"))
CELERY_BEAT_SCHEDULE = {
    "reconcile-training": {"task": "orchestrator.learning.tasks.reconcile_training", "schedule": ALO_RECONCILE_SECONDS},
    "reconcile-scoring": {"task": "orchestrator.learning.tasks.reconcile_scoring", "schedule": ALO_RECONCILE_SECONDS},
    "resume-cleanups": {"task": "orchestrator.learning.tasks.resume_cleanups", "schedule": ALO_RECONCILE_SECONDS},
    # Each project's webhook repaired if someone edited it away; old events pruned.
    "ensure-webhooks": {"task": "orchestrator.learning.tasks.ensure_webhooks", "schedule": 3600.0},
    "prune-events": {"task": "orchestrator.learning.tasks.prune_events", "schedule": 3600.0},
}

# --- Processes: `make run` (manage.py serve), gunicorn, Celery workers -----------------------
PORT = env_int("PORT", 9090)  # manage.py serve binds HOST:PORT
HOST = env_str("HOST", "127.0.0.1")
WEB_WORKERS = env_int("WEB_WORKERS", 2)  # gunicorn processes
WEB_THREADS = env_int("WEB_THREADS", 4)  # request threads per process (gthread)
WEB_WORKER_CLASS = env_str("WEB_WORKER_CLASS", "gthread")
WEB_TIMEOUT = env_int("WEB_TIMEOUT", 300)  # seconds a request may take (a large /predict)
ACCESS_LOG = env_bool("ACCESS_LOG", False)  # gunicorn's access log on stdout (every path, admin included)
# One line per protocol request (method, path, status, ms, project, version) from the service.
ALO_ACCESS_LOG = env_bool("ALO_ACCESS_LOG", True)
WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 1)  # Celery worker processes under manage.py serve
# Niceness a Celery worker adds to itself, so jobs yield the CPU to web requests (0: off).
ALO_WORKER_NICE = env_int("ALO_WORKER_NICE", 10)

# --- Logging ------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "alembic": {"level": "WARNING"},
        "mlflow": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # one line per Label Studio page otherwise
        # Celery's "received" and "succeeded" lines for every task: a burst's training checks,
        # every 2 s, drowned the service's own lines (one per training, per push).
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        # Beat's "Sending due task" for each reconciliation: several lines a minute with nothing happening.
        "celery.beat": {"level": "WARNING"},
    },
}
