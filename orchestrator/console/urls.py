"""Routes of the management API under /api/, with its OpenAPI schema and documentation pages."""
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from orchestrator.console import api

router = DefaultRouter()
router.register("projects", api.ProjectViewSet, basename="project")
router.register("versions", api.ModelVersionViewSet, basename="version")
router.register("scoring-runs", api.ScoringRunViewSet, basename="scoring-run")
router.register("training-runs", api.TrainingRunViewSet, basename="training-run")

urlpatterns = [
    path("strategies/", api.StrategyList.as_view(), name="strategies"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("", include(router.urls)),
]
