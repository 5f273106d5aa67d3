"""Upgrading keeps what a project serves: renames of the schema carry their data along."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db(transaction=True)
def test_the_serving_version_survives_the_rename_of_its_column():
    executor = MigrationExecutor(connection)
    executor.migrate([("learning", "0004_scoring_pool")])
    old = executor.loader.project_state([("learning", "0004_scoring_pool")]).apps
    project = old.get_model("learning", "Project").objects.create(
        ls_project_id=41, label_config="<View/>", label_config_digest="d")
    version = old.get_model("learning", "ModelVersion").objects.create(
        project=project, version="p41-v1", label_config_digest="d", status="serving")
    project.serving = version
    project.save()

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    from orchestrator.learning.models import Project

    assert Project.objects.get(ls_project_id=41).serving_version.version == "p41-v1"


@pytest.mark.django_db(transaction=True)
def test_projects_and_versions_from_before_features_keep_learning_from_tfidf():
    executor = MigrationExecutor(connection)
    executor.migrate([("learning", "0005_serving_version")])
    old = executor.loader.project_state([("learning", "0005_serving_version")]).apps
    project = old.get_model("learning", "Project").objects.create(
        ls_project_id=42, label_config="<View/>", label_config_digest="d")
    old.get_model("learning", "ModelVersion").objects.create(project=project, version="p42-v1", label_config_digest="d")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    from orchestrator.learning.models import ModelVersion, Project

    assert Project.objects.get(ls_project_id=42).features == "tfidf"
    assert ModelVersion.objects.get(version="p42-v1").features == "tfidf"
    assert Project.objects.create(ls_project_id=43, label_config="<View/>", label_config_digest="d").features == \
        "tfidf+glove"  # a project connected from now on


@pytest.mark.django_db(transaction=True)
def test_a_project_served_before_the_serving_history_can_roll_back_once_as_before():
    executor = MigrationExecutor(connection)
    executor.migrate([("learning", "0015_task_mirror")])
    old = executor.loader.project_state([("learning", "0015_task_mirror")]).apps
    Project, ModelVersion = old.get_model("learning", "Project"), old.get_model("learning", "ModelVersion")
    project = Project.objects.create(ls_project_id=44, label_config="<View/>", label_config_digest="d")
    made = {}
    for n, status in ((1, "ready"), (2, "retired"), (3, "serving"), (4, "ready")):  # v4: trained, not promoted
        made[n] = ModelVersion.objects.create(project=project, version=f"p44-v{n}", label_config_digest="d",
                                              status=status)
    project.serving_version = made[3]
    project.save()
    unserved = Project.objects.create(ls_project_id=45, label_config="<View/>", label_config_digest="d")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    from orchestrator.learning.models import ServingHistory

    assert ServingHistory.objects.get(project_id=project.pk).replaced == [made[1].pk]
    assert not ServingHistory.objects.filter(project_id=unserved.pk).exists()
