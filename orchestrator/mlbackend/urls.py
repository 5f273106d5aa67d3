"""Routes of the ML backend protocol, at the paths Label Studio calls (no trailing slash)."""
from django.urls import path

from orchestrator.mlbackend import views

urlpatterns = [
    path("", views.health),
    path("health", views.health),
    path("setup", views.setup),
    path("predict", views.predict),
    path("webhook", views.webhook),
    path("train", views.train),
    path("versions", views.versions),
]
