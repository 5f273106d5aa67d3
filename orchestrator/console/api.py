"""The management API (DRF): the console's operations for scripts. Views are thin: they parse,
call one service (versions, steering, scoring runs, training schedule) and answer JSON;
refusals are 4xx whose `detail` says why."""
from __future__ import annotations

import re

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

import strategies
from orchestrator.console import serializers as s
from orchestrator.console.pagination import ID
from orchestrator.learning import selectors, steering, versions
from orchestrator.learning.models import ModelVersion, Project, ScoringRun, TrainingRun
from orchestrator.learning.scoring import runs
from orchestrator.learning.training import loop as training_loop
from orchestrator.learning.training import schedule as training_schedule

# Refusals of the services, as statuses: a bad value is 400; an act the current state forbids, 409.
STATUS_OF = {steering.SettingError: 400, versions.VersionError: 409, runs.RunError: 409,
             training_loop.CancelError: 409}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every refusal as `{"detail": "...", "field": ...}` (field: the request's, when one is to blame)."""
    for kind, code in STATUS_OF.items():
        if isinstance(exc, kind):
            body = {"detail": str(exc)}
            if getattr(exc, "field", ""):
                body["field"] = exc.field
            return Response(body, status=code)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        response.data = _one_error(exc.detail)
    return response


def _one_error(detail) -> dict:
    """DRF's validation errors ({"field": ["message", ...]} or [...]) in the API's one shape: the first of them."""
    field = ""
    while isinstance(detail, (dict, list)) and detail:
        if isinstance(detail, dict):
            key, detail = next(iter(detail.items()))
            field = field or ("" if key == "non_field_errors" else str(key))
        else:
            detail = detail[0]
    message = str(detail) if detail else "invalid request"
    return {"detail": f"{field}: {message}" if field else message, **({"field": field} if field else {})}


def _outcome(detail: str, **fields) -> Response:
    return Response({"detail": detail, **fields}, status=status.HTTP_200_OK)


class ProjectViewSet(viewsets.ReadOnlyModelViewSet):
    """Projects that use the service as their model, by Label Studio project id."""

    serializer_class = s.ProjectSerializer
    read_models = {"versions": "modelversion"}  # what a read of each action returns (permissions.py)
    lookup_field = "ls_project_id"
    lookup_value_regex = ID

    def get_queryset(self) -> QuerySet:
        return Project.objects.select_related("serving_version").order_by("ls_project_id")

    @extend_schema(responses=s.ModelVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, ls_project_id: str) -> Response:
        project = self.get_object()
        rows = (ModelVersion.objects.filter(project=project).select_related("project").defer("stop_predictions")
                .order_by("-created_at"))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.ModelVersionSerializer(page, many=True).data)

    @extend_schema(responses=s.LearningCurvePointSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="learning-curve", pagination_class=None)
    def learning_curve(self, request: Request, ls_project_id: str) -> Response:
        return Response(selectors.learning_curve(self.get_object()))

    @extend_schema(request=s.StrategySerializer, responses=s.OutcomeSerializer)
    @action(detail=True, methods=["put"])
    def strategy(self, request: Request, ls_project_id: str) -> Response:
        """Change the strategy (and its options); re-scores the queue unless `rescore` is false."""
        body = s.StrategySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        change = steering.change_strategy(self.get_object(), strategy=body.validated_data["strategy"],
                                          params=body.validated_data["strategy_params"],
                                          rescore=body.validated_data["rescore"])
        return _outcome(change.describe(), scoring_run=change.scoring_run.pk if change.scoring_run else None)

    @extend_schema(request=s.ScheduleSerializer, responses=s.ScheduleSerializer)
    @action(detail=True, methods=["get", "put"])
    def schedule(self, request: Request, ls_project_id: str) -> Response:
        """The bulk re-prediction schedule: off, every N hours, or a crontab (UTC)."""
        project = self.get_object()
        if request.method == "GET":
            return Response(s.schedule_data(steering.schedule_of(project)))
        body = s.ScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(s.schedule_data(steering.set_schedule(project, body.validated_data["schedule"])))

    @extend_schema(request=s.TrainSerializer, responses={202: s.OutcomeSerializer})
    @action(detail=True, methods=["post"])
    def train(self, request: Request, ls_project_id: str) -> Response:
        """Train now (as Label Studio's Start Training); the run appears under training runs.

        On the annotations the latest version learned the run is skipped and says so, unless
        `even_if_unchanged` is true.
        """
        body = s.TrainSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        event = training_schedule.request_training(self.get_object(), source="api",
                                                   even_if_unchanged=body.validated_data["even_if_unchanged"])
        return Response({"detail": "training asked for", "event": event.pk}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: s.OutcomeSerializer})
    @action(detail=True, methods=["post"])
    def score(self, request: Request, ls_project_id: str) -> Response:
        """Score every unlabeled task with what serves and push it to Label Studio."""
        run = runs.request_scoring(self.get_object(), trigger="api")
        if run is None:
            return Response({"detail": "nothing to score with"}, status=status.HTTP_409_CONFLICT)
        return Response({"detail": f"scoring run {run.pk} ({run.status}, {run.tag})", "scoring_run": run.pk},
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=s.OutcomeSerializer)
    @action(detail=True, methods=["post"], url_path="roll-back")
    def roll_back(self, request: Request, ls_project_id: str) -> Response:
        """Undo the last promotion: serve the version it replaced (those that can no longer serve skipped), re-score."""
        served = versions.roll_back(self.get_object())
        return _outcome(served.describe(), serving_version=served.version.version,
                        scoring_run=served.scoring_run.pk if served.scoring_run else None)


class ProjectRows(viewsets.ReadOnlyModelViewSet):
    """Rows of every project, newest first; `?project=<Label Studio id>` narrows the list."""

    lookup_value_regex = ID
    rows: QuerySet  # the model's rows, related objects selected and ordered

    def get_queryset(self) -> QuerySet:
        return _of_project(self.rows.all(), self.request)

    @extend_schema(parameters=[OpenApiParameter("project", int, description="Label Studio project id")])
    def list(self, request: Request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)


class ModelVersionViewSet(ProjectRows):
    """Every project's model versions."""

    serializer_class = s.ModelVersionSerializer
    rows = ModelVersion.objects.select_related("project").defer("stop_predictions").order_by("-created_at", "-pk")

    @extend_schema(request=None, responses=s.OutcomeSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str) -> Response:
        """Serve this version and re-score the queue with it."""
        served = versions.promote(self.get_object())
        return _outcome(served.describe(), serving_version=served.version.version,
                        scoring_run=served.scoring_run.pk if served.scoring_run else None)

    @extend_schema(request=None, responses=s.OutcomeSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str) -> Response:
        """Take the version out of use (a roll back skips it); not the serving one."""
        version = versions.retire(self.get_object())
        return _outcome(f"{version.version} is retired")


class ScoringRunViewSet(ProjectRows):
    """Scoring runs (pushes)."""

    serializer_class = s.ScoringRunSerializer
    rows = ScoringRun.objects.select_related("project", "model_version").order_by("-created_at", "-pk")

    @extend_schema(request=None, responses=s.ScoringRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Stop a queued or running run before its next chunk."""
        return Response(s.ScoringRunSerializer(runs.cancel(self.get_object(), by=request.user.get_username())).data)

    @extend_schema(request=None, responses={202: s.ScoringRunSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Go on with a failed or cancelled run, or start a new run of what serves."""
        answer = runs.retry(self.get_object())
        if answer is None:
            return Response({"detail": "nothing to score with"}, status=status.HTTP_409_CONFLICT)
        return Response(s.ScoringRunSerializer(answer).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunViewSet(ProjectRows):
    """Training runs."""

    serializer_class = s.TrainingRunSerializer
    rows = TrainingRun.objects.select_related("project", "model_version").order_by("-started_at", "-pk")

    @extend_schema(request=None, responses=s.TrainingRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Stop a running training before its next phase; a version it fitted is not promoted."""
        run = training_loop.cancel(self.get_object(), by=request.user.get_username())
        return Response(s.TrainingRunSerializer(run).data)


class StrategyList(APIView):
    """The registered query strategies, with what each measures and the options it takes."""

    @extend_schema(responses=s.StrategyInfoSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response([{"name": name, "description": strategies.get(name).description,
                          "kind": strategies.get(name).kind, "options": strategies.option_names(name)}
                         for name in strategies.names()])


def _of_project(rows: QuerySet, request: Request) -> QuerySet:
    wanted = request.query_params.get("project")
    if wanted in (None, ""):
        return rows
    if not re.fullmatch(ID, wanted):
        raise ValidationError({"project": f"a Label Studio project id (a number), got {wanted!r}"})
    get_object_or_404(Project, ls_project_id=int(wanted))
    return rows.filter(project__ls_project_id=int(wanted))
