"""The project page: strategy, features, schedule, learning curve, Label Studio's counts, jobs."""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from orchestrator.console.charts import learning_curve_svg
from orchestrator.gateways import label_studio, label_studio_console
from orchestrator.learning import access, projects, selectors, steering, versions
from orchestrator.learning.admin.common import (
    ReadOnlyAdmin,
    Steering,
    _metric,
    estimate_text,
    progress_bar,
    strategy_choices,
)
from orchestrator.learning.models import (
    ModelVersion,
    Project,
    RefusedConnection,
    ScoringPolicy,
    ScoringRun,
    TrainingPolicy,
)
from orchestrator.learning.scoring import runs
from orchestrator.learning.scoring.cleanup import own_tags
from orchestrator.learning.training import schedule as training_schedule


class ProjectForm(forms.ModelForm):
    strategy = forms.ChoiceField(choices=strategy_choices, help_text=(
        "How the serving model's probabilities become the queue's order. Saving another strategy re-scores the "
        "queue with the serving version."))
    strategy_params = forms.JSONField(required=False, initial=dict, help_text=(
        'Options of the strategy as a JSON object, e.g. {"candidates": 500} for ranked_batch; {} for none.'))
    schedule_kind = forms.ChoiceField(label="Re-scoring schedule", choices=[
        ("off", "off"), ("hours", "every N hours"), ("crontab", "crontab (UTC)")], initial="off",
        help_text="Re-score every unlabeled task on a schedule (Celery beat), e.g. after bulk imports.")
    every_hours = forms.FloatField(label="Every N hours", required=False, help_text="From 1/60 (a minute) to 8784.")
    crontab = forms.CharField(label="Crontab", required=False, help_text=(
        'Five fields, "minute hour day-of-month month day-of-week": "0 2 * * *" is 02:00 UTC every day.'))

    class Meta:
        model = Project
        fields = ("title", "strategy", "strategy_params", "features")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            current = steering.schedule_of(self.instance)
            self.fields["schedule_kind"].initial = current.kind
            self.fields["every_hours"].initial = current.every_hours
            self.fields["crontab"].initial = current.crontab

    def clean(self):
        data = super().clean()
        if self.instance.pk and "strategy" in data:
            try:
                data["strategy_params"] = steering.check_strategy(self.instance, data["strategy"],
                                                                  data.get("strategy_params"))
            except steering.SettingError as error:
                self.add_error(error.field or "strategy", str(error))
        try:
            data["schedule"] = steering.parse_schedule(kind=data.get("schedule_kind", "off"),
                                                       every_hours=data.get("every_hours"),
                                                       crontab=data.get("crontab") or "")
        except steering.SettingError as error:
            self.add_error(error.field if error.field in self.fields else "schedule_kind", str(error))
        return data


class ConnectForm(forms.Form):
    """Which Label Studio project gets this service as its model, and at which address."""

    project = forms.TypedChoiceField(label="Label Studio project", coerce=int, help_text=(
        "Projects the service's token (LABEL_STUDIO_API_KEY) sees; those already connected are marked."))
    url = forms.URLField(label="Service URL", max_length=500, assume_scheme="http", help_text=(
        "Where Label Studio reaches this service (ALO_SERVICE_URL sets the default)."))
    title = forms.CharField(label="Model title in Label Studio", max_length=100, initial="Active learning")

    def __init__(self, *args, projects: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        connected = set(Project.objects.values_list("ls_project_id", flat=True))
        self.titles = {p["id"]: p["title"] for p in projects}
        self.fields["project"].choices = [
            (p["id"], f"{p['id']}: {p['title'] or '(untitled)'}" + (" (connected)" if p["id"] in connected else ""))
            for p in projects]


def _unlearnable_config(ls_project_id: int) -> str:
    """Why the service would refuse the project's label config at /setup ("" if it would not): said
    before Label Studio is asked, since Label Studio reports a refused /setup only as a 400."""
    from backends import backend_for

    try:
        config = label_studio.get_project(ls_project_id).get("label_config") or ""
    except label_studio.LabelStudioError:
        return ""  # connecting asks Label Studio again and reports what it answers
    if not config:
        return ""
    try:
        backend_for(config)
    except ValueError as error:
        return f"project {ls_project_id}'s label config is not one this service learns: {error}"
    return ""


def _refusal(ls_project_id: int, url: str, error: Exception) -> str:
    said = f"Label Studio did not connect project {ls_project_id} to {url}: {error}"
    project = Project.objects.filter(ls_project_id=ls_project_id).first()
    if project is not None and project.last_setup_error:
        return f"{said} — this service refused its /setup: {project.last_setup_error}"
    return f"{said} — if Label Studio reached the service, its log says why (setup_refused)"


class PolicyInline(admin.StackedInline):
    """A project's policy: read by whoever reads the project, edited by whoever may steer it."""

    can_delete = False
    extra = 0
    max_num = 1

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.can_view(request.user, "project") or super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.can_steer(request.user) or super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.can_steer(request.user) or super().has_add_permission(request, obj)


class TrainingPolicyInline(PolicyInline):
    model = TrainingPolicy


class ScoringPolicyInline(PolicyInline):
    model = ScoringPolicy


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ("version", "status", "features", "strategy", "num_annotations", "estimate", "macro_f1", "stop_kappa",
              "finished_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="F1, audit [90%] n")
    def estimate(self, version: ModelVersion) -> str:
        return estimate_text(version)

    @admin.display(description="F1, labelled set (biased)")
    def macro_f1(self, version: ModelVersion) -> str:
        return _metric(version, "macro_f1")


@admin.register(RefusedConnection)
class RefusedConnectionAdmin(ReadOnlyAdmin):
    """Label Studio projects whose Connect was refused before any connected: each goes once one connects."""

    list_display = ("ls_project_id", "reason", "hostname", "times", "refused_at")
    search_fields = ("ls_project_id", "reason")


@admin.register(Project)
class ProjectAdmin(Steering, admin.ModelAdmin):
    form = ProjectForm
    list_display = ("ls_project_id", "title", "strategy", "features", "serving", "queue_push", "schedule",
                    "connection", "last_setup_at")
    list_display_links = ("ls_project_id", "title")
    search_fields = ("ls_project_id", "title")
    readonly_fields = ("ls_project_id", "label_studio", "labels", "serving_version", "connection_error",
                       "learning_curve", "recent_runs", "backend", "ls_project_key", "ls_hostname", "extra_params",
                       "created_at", "last_setup_at")
    fieldsets = (
        (None, {"fields": ("ls_project_id", "title", "label_studio", "labels", "serving_version",
                           "connection_error")}),
        ("Strategy and features", {"fields": ("strategy", "strategy_params", "features")}),
        ("Re-scoring schedule", {"fields": ("schedule_kind", "every_hours", "crontab")}),
        ("Learning curve", {"fields": ("learning_curve",)}),
        ("Jobs", {"fields": ("recent_runs",)}),
        ("Connection", {"classes": ("collapse",), "fields": ("backend", "ls_project_key", "ls_hostname",
                                                              "extra_params", "created_at", "last_setup_at")}),
    )
    inlines = [TrainingPolicyInline, ScoringPolicyInline, ModelVersionInline]
    actions = ["score_and_push", "train_now", "train_even_if_unchanged", "roll_back"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # projects come from Label Studio's /setup: "Connect a Label Studio project" asks for one

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        if self.has_change_permission(request, obj):
            return super().get_fieldsets(request, obj)
        # Read-only: the schedule in words (its form's three fields would each read "None").
        return [(name, {**options, "fields": ("schedule",)}) if name == "Re-scoring schedule" else (name, options)
                for name, options in super().get_fieldsets(request, obj)]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {"can_steer": self.has_steer_permission(request), **(extra_context or {})}
        refused = list(RefusedConnection.objects.order_by("-refused_at")[:5])
        if refused and request.method == "GET":  # projects that tried to connect are not listed below: say so
            more = RefusedConnection.objects.count() - len(refused)
            self.message_user(request, format_html(
                "Refused connections (not in this list): {}{} — <a href='{}'>all refused connections</a>",
                format_html_join("; ", "Label Studio project {} at {}: {}", (
                    (r.ls_project_id, timezone.localtime(r.refused_at).strftime("%Y-%m-%d %H:%M"), r.reason[:300])
                    for r in refused)),
                f" and {more} more" if more > 0 else "", reverse("admin:learning_refusedconnection_changelist")),
                messages.WARNING)
        return super().changelist_view(request, extra_context=extra)

    def get_urls(self):
        connect = path("connect/", self.admin_site.admin_view(self.connect_view), name="learning_project_connect")
        return [connect, *super().get_urls()]

    def connect_view(self, request: HttpRequest) -> HttpResponse:
        """Register the service as a Label Studio project's model through Label Studio's API; Label
        Studio calls /setup while doing so, which creates the project here."""
        if not self.has_steer_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied(access.steer_refusal())
        unavailable, listed = "", []
        if not label_studio.is_configured():
            unavailable = "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are unset: the service cannot call Label Studio."
        else:
            try:
                listed = label_studio_console.list_projects()
            except label_studio.LabelStudioError as error:
                unavailable = f"Label Studio could not be read: {error}"
        initial = {"url": settings.ALO_SERVICE_URL or request.build_absolute_uri("/").rstrip("/")}
        form = ConnectForm(request.POST or None, initial=initial, projects=listed)
        if request.method == "POST" and not unavailable and form.is_valid():
            ls_id, url = form.cleaned_data["project"], form.cleaned_data["url"].rstrip("/")
            auth = (settings.BASIC_AUTH_USER, settings.BASIC_AUTH_PASS) if settings.BASIC_AUTH_USER else None
            unfit = _unlearnable_config(ls_id)
            if unfit:
                form.add_error("project", unfit)
            else:
                try:
                    label_studio_console.connect_model(ls_id, url=url, title=form.cleaned_data["title"], auth=auth)
                except label_studio.LabelStudioError as error:
                    form.add_error(None, _refusal(ls_id, url, error))
            if not form.errors:
                project = Project.objects.filter(ls_project_id=ls_id).first()
                if project is None:
                    self.message_user(request, f"Label Studio project {ls_id} connected to {url}; it appears here "
                                               "once Label Studio calls /setup", messages.WARNING)
                    return HttpResponseRedirect(reverse("admin:learning_project_changelist"))
                projects.remember_title(project, form.titles.get(ls_id))
                self.message_user(request, f"{project} is connected: Label Studio uses {url} as its model")
                return HttpResponseRedirect(reverse("admin:learning_project_change", args=[project.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Connect a Label Studio project", "unavailable": unavailable}
        return TemplateResponse(request, "admin/learning/project/connect.html", context)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("serving_version")

    # columns
    @admin.display(description="serving version", ordering="serving_version__version")
    def serving(self, project: Project) -> str:
        return project.serving_version.version if project.serving_version else "cold start"

    @admin.display(description="last push")
    def queue_push(self, project: Project) -> str:
        run = ScoringRun.objects.filter(project=project).order_by("-created_at").only(
            "status", "done", "total", "tag").first()
        return "-" if run is None else f"{run.tag}: {run.status} {run.done}/{run.total}"

    @admin.display(description="schedule")
    def schedule(self, project: Project) -> str:
        return steering.schedule_of(project).describe()

    @admin.display(description="connection", boolean=True)
    def connection(self, project: Project) -> bool:
        return not project.last_setup_error

    # page fields
    @admin.display(description="In Label Studio")
    def label_studio(self, project: Project) -> str:
        if not label_studio.is_configured():
            return label_studio.NOT_CONFIGURED
        try:
            summary = label_studio_console.project_summary(project.ls_project_id)
        except label_studio.LabelStudioError as error:
            return f"Label Studio could not be read: {error}"
        projects.remember_title(project, summary["title"])
        # Between a push switching the queue and its clean-up, tasks carry an older tag's prediction too.
        ours = own_tags(project) - {summary["model_version"]}
        old = sum(n for tag, n in summary["tags"].items() if tag in ours)
        extra = f" ({old} of older pushes, being deleted)" if old else ""
        return format_html(
            "<b>{}</b>: {} tasks, {} annotated, {} in the queue (unlabeled), {} predictions{}; sorts by "
            "model_version <code>{}</code>, sampling {} — <a href='{}/projects/{}/data' target='_blank'>open</a>",
            summary["title"] or "(untitled)", summary["tasks"], summary["annotated"], summary["queue"],
            summary["predictions"], extra, summary["model_version"] or "(none)", summary["sampling"] or "-",
            settings.LABEL_STUDIO_URL, project.ls_project_id)

    @admin.display(description="Label config")
    def labels(self, project: Project) -> str:
        try:
            from backends import backend_for

            backend = backend_for(project.label_config)
        except ValueError as error:
            return f"not usable: {error}"
        kind = "multi-label" if backend.multiple else "single choice"
        return format_html("&lt;{}&gt; {} on &lt;{}&gt; {} ({}): {}", backend.control.tag, backend.control.name,
                           backend.object.tag, backend.object.name, kind, ", ".join(backend.labels))

    @admin.display(description="Last refused connection")
    def connection_error(self, project: Project) -> str:
        if not project.last_setup_error:
            return "none: the last /setup was accepted"
        return format_html("<span class='errornote'>{} — {}</span>", timezone.localtime(
            project.last_setup_error_at).strftime("%Y-%m-%d %H:%M:%S %Z"), project.last_setup_error)

    @admin.display(description="Learning curve")
    def learning_curve(self, project: Project) -> str:
        return learning_curve_svg(selectors.learning_curve(project))

    @admin.display(description="Recent runs")
    def recent_runs(self, project: Project) -> str:
        scoring = reverse("admin:learning_scoringrun_changelist") + f"?project__id__exact={project.pk}"
        training = reverse("admin:learning_trainingrun_changelist") + f"?project__id__exact={project.pk}"
        rows = ScoringRun.objects.filter(project=project).order_by("-created_at")[:3]
        items = format_html_join("", "<li>scoring {} ({}): {} {}</li>", (
            (run.tag, run.trigger, run.status, progress_bar(run)) for run in rows))
        return format_html("<ul>{}</ul><a href='{}'>all scoring runs</a> · <a href='{}'>all training runs</a>",
                           items, scoring, training)

    def save_model(self, request: HttpRequest, obj: Project, form: ProjectForm, change: bool) -> None:
        strategy, params = form.cleaned_data["strategy"], form.cleaned_data.get("strategy_params") or {}
        stored = Project.objects.get(pk=obj.pk)
        obj.strategy, obj.strategy_params = stored.strategy, stored.strategy_params
        super().save_model(request, obj, form, change)
        change_made = steering.change_strategy(obj, strategy=strategy, params=params)
        if change_made.changed:
            self.message_user(request, change_made.describe())
        wanted, current = form.cleaned_data["schedule"], steering.schedule_of(obj)
        if (wanted.kind, wanted.every_hours, wanted.crontab) != (current.kind, current.every_hours, current.crontab):
            self.message_user(request, f"{obj}: re-scoring {steering.set_schedule(obj, wanted).describe()}")

    # actions
    @admin.action(permissions=["steer"], description="Score unlabeled tasks and push them to Label Studio")
    def score_and_push(self, request: HttpRequest, queryset: QuerySet) -> None:
        for project in queryset:
            run = runs.request_scoring(project, trigger="admin")
            what = " (no trained version serves yet: the cold start's order)" if run.cold_start else ""
            self.message_user(request, f"{project}: scoring run {run.pk} ({run.status}, {run.tag}){what}")

    @admin.action(permissions=["steer"], description="Train now (as Label Studio's Start Training)")
    def train_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for project in queryset:
            event = training_schedule.request_training(project)
            self.message_user(request, f"{project}: training asked for (event {event.pk}); its run and the version "
                                       "it trains appear under Training runs (on the annotations the latest "
                                       "version learned, the run says so and trains nothing)")

    @admin.action(permissions=["steer"], description="Train now, even on unchanged annotations")
    def train_even_if_unchanged(self, request: HttpRequest, queryset: QuerySet) -> None:
        for project in queryset:
            event = training_schedule.request_training(project, even_if_unchanged=True)
            self.message_user(request, f"{project}: training asked for (event {event.pk}), a new version even on "
                                       "the annotations the latest one learned")

    @admin.action(permissions=["steer"], description="Roll back: serve the version the last promotion replaced")
    def roll_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        for project in queryset:
            try:
                self.message_user(request, f"{project}: {versions.roll_back(project).describe()}")
            except versions.VersionError as error:
                self.message_user(request, str(error), messages.ERROR)
