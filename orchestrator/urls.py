"""URL routes: the ML backend protocol at the root, the admin under /admin/, the management API under /api/."""
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def no_icon(request: HttpRequest) -> HttpResponse:
    """Browsers ask every page's host for an icon: "none", answered quietly (a 404 logs a warning each time)."""
    response = HttpResponse(status=204)
    response["Cache-Control"] = "max-age=86400"
    return response


urlpatterns = [
    path("favicon.ico", no_icon),
    path("admin/", admin.site.urls),
    path("api/", include("orchestrator.console.urls")),
    path("", include("orchestrator.mlbackend.urls")),
]

admin.site.site_header = "Active-learning orchestrator"
# The run and version lists are wide: their columns get the window, not a second menu (Home lists the models).
admin.site.enable_nav_sidebar = False
admin.site.site_title = "Active-learning console"
admin.site.index_title = "Projects, model versions and jobs"
